"""Automatic explanations: each feature's top-image grid sent to a vision-language model, the answer stored.

Prompt version v1 sends one user message: the instruction below and a 3 x 3 grid (by default) of the feature's
strongest images, strongest first, with its patch heatmap over each. Each answer is stored in the side file as
soon as it arrives, keyed by feature, model and prompt version, so a killed run resumes where it stopped and
never asks twice for a feature already explained (unless --force).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from saetui.errors import NotFoundError, UsageError
from saetui.naming.endpoint import Completion, Endpoint
from saetui.naming.grids import data_url, feature_grid, top_image_ids
from saetui.store.annotations import Annotations, now
from saetui.store.connection import connect

PROMPT_VERSION = "v1"
SYSTEM = (
    "You name the features of a sparse autoencoder trained on the activations of a vision model. "
    "You see the images that activate one feature most strongly and say what they have in common."
)
INSTRUCTION = (
    "The grid shows the {n} images that activate one feature most strongly, strongest first (left to right, "
    "top to bottom). Bright tinted patches mark where the feature fires; dimmed patches are where it does not. "
    "What does this feature detect? Answer with one short phrase of at most 12 words and nothing else."
)
Progress = Callable[["ExplainProgress"], None]


@dataclass(frozen=True)
class ExplainOptions:
    """How grids are drawn and how many requests run at once."""

    n_images: int = 9
    columns: int = 3
    side: int = 224
    heatmap: bool = True
    originals: bool = True
    concurrency: int = 1
    max_tokens: int = 200
    force: bool = False


@dataclass
class ExplainProgress:
    """Counts so far (what the progress line shows)."""

    total: int
    done: int = 0
    skipped: int = 0
    failed_features: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    last_feature: int | None = None
    last_text: str = ""


def choose_features(con: duckdb.DuckDBPyConnection, features: Sequence[int] | None, top: int | None) -> list[int]:
    """The listed features (checked against the SAE's width), else the `top` most frequent alive ones."""
    from saetui.stats.queries import require

    require(con, "features", "feature_images")
    if features is not None:
        width = con.execute("SELECT count(*) FROM features").fetchone()[0]
        wrong = [f for f in features if not 0 <= f < width]
        if wrong:
            raise UsageError(f"feature {wrong[0]} does not exist", f"the SAE has features 0 to {width - 1}")
        return list(dict.fromkeys(int(f) for f in features))
    if top is None:
        raise UsageError("say which features", "pass --top N (the N most frequent) or --features 1,2,3")
    rows = con.execute(
        "SELECT feature FROM features WHERE NOT dead ORDER BY frequency DESC, feature LIMIT ?", [int(top)]
    ).fetchall()
    return [int(f) for (f,) in rows]


def explanation_messages(grid_url: str, n_images: int) -> list[dict[str, Any]]:
    """The chat messages of prompt v1 for one feature's grid."""
    return [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": INSTRUCTION.format(n=n_images)},
                {"type": "image_url", "image_url": {"url": grid_url}},
            ],
        },
    ]


def clean_answer(text: str) -> str:
    """The phrase of an answer: reasoning blocks, quotes, 'Answer:' prefixes and a final full stop removed."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL | re.IGNORECASE)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    phrase = lines[0] if lines else ""
    phrase = re.sub(r"^(answer|feature|label|phrase)\s*:\s*", "", phrase, flags=re.IGNORECASE)
    return phrase.strip().strip("\"'*`").strip().rstrip(".").strip()


def explain_features(
    db: Path,
    endpoint: Endpoint,
    features: Sequence[int] | None = None,
    top: int | None = None,
    options: ExplainOptions | None = None,
    progress: Progress | None = None,
) -> ExplainProgress:
    """Ask the endpoint about each chosen feature not yet explained by this model and prompt; store each answer."""
    options = options or ExplainOptions()
    side = Annotations(db)
    con = connect(db, read_only=True)
    try:
        chosen = choose_features(con, features, top)
        done = set() if options.force else side.explained(endpoint.model, PROMPT_VERSION)
        todo = [f for f in chosen if f not in done]
        state = ExplainProgress(total=len(chosen), skipped=len(chosen) - len(todo))
        if progress is not None:
            progress(state)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            pending: dict[Future[Completion], tuple[int, list[int]]] = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < max(1, options.concurrency):
                    feature = queue.pop(0)
                    ids = top_image_ids(con, feature, options.n_images)
                    if not ids:
                        state.failed_features += 1  # dead, or no stored top images: nothing to show
                        continue
                    grid = feature_grid(
                        con, feature, ids, options.side, options.columns, options.heatmap, options.originals
                    )
                    messages = explanation_messages(data_url(grid), len(ids))
                    pending[pool.submit(endpoint.chat, messages, options.max_tokens)] = (feature, ids)
                if not pending:
                    break
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in finished:
                    feature, ids = pending.pop(future)
                    answer = future.result()  # a NetworkError ends the run; what is stored stays
                    text = clean_answer(answer.text)
                    side.add_explanation(
                        {
                            "feature": feature,
                            "explanation": text,
                            "model": endpoint.model,
                            "prompt_version": PROMPT_VERSION,
                            "endpoint": endpoint.base_url,
                            "image_ids": ids,
                            "prompt_tokens": answer.prompt_tokens,
                            "completion_tokens": answer.completion_tokens,
                            "seconds": answer.seconds,
                            "created_at": now(),
                        }
                    )
                    state.done += 1
                    state.prompt_tokens += answer.prompt_tokens or 0
                    state.completion_tokens += answer.completion_tokens or 0
                    state.seconds = time.perf_counter() - started
                    state.last_feature, state.last_text = feature, text
                    if progress is not None:
                        progress(state)
    finally:
        con.close()
    if state.total == 0:
        raise NotFoundError("no feature to explain", "every chosen feature is dead; pick others with --features")
    return state

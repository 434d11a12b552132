"""Sort Eval (CLIP-Scope's protocol): can a model tell which of two features a held-out image belongs to?

A trial shows two features' 3 x 3 grids of top images (grid 1 and grid 2, which feature comes first drawn at
random) and one held-out image, drawn from ranks 10 to 20 of one of the two features and shown in neither grid;
the model answers 1 or 2. The score of an SAE (or of the chosen features) is the share of trials answered
right: 0.5 is chance, 1 means every feature's top images are recognisably one thing. Trials are drawn from the
seed, so a run is reproducible and resumable: each answer is stored as it arrives and a rerun asks only for the
trials not stored yet. Grids are plain images by default (no heatmap), as the held-out image must be.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from saetui.errors import DataError, UsageError
from saetui.naming.endpoint import Endpoint
from saetui.naming.grids import data_url, feature_grid, image_tiles, top_image_sets
from saetui.store.annotations import Annotations, now
from saetui.store.connection import connect

PROMPT_VERSION = "sort-v1"
GRID_IMAGES = 9
HELD_OUT_RANKS = (10, 20)  # the held-out image comes from these ranks of its feature (inclusive)
INSTRUCTION = (
    "Image 1 and image 2 are grids of the images that most strongly activate two different features of a vision "
    "model. Image 3 is one more image that strongly activates exactly one of the two features. Which feature does "
    "image 3 belong to? Answer with the single digit 1 or 2."
)
Progress = Callable[[int, int, int], None]  # trials answered, in all, right (first call: before asking)


@dataclass(frozen=True)
class Trial:
    """One Sort Eval question: the two features in the order shown, the held-out image and the right answer."""

    trial: int
    feature_a: int
    feature_b: int
    held_out: int
    truth: str  # "1" when the held-out image belongs to feature_a (shown first), else "2"
    grid_a: tuple[int, ...]
    grid_b: tuple[int, ...]


@dataclass(frozen=True)
class SortEvalResult:
    """The score of one run: trials answered right among those answered, with a 95% Wilson interval."""

    model: str
    seed: int
    trials: int
    correct: int
    asked: int  # trials sent in this call (the rest came from the side file)

    @property
    def accuracy(self) -> float:
        """Share of trials answered right."""
        return self.correct / self.trials if self.trials else math.nan

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson score interval of the accuracy."""
        n = self.trials
        if n == 0:
            return (math.nan, math.nan)
        p = self.correct / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return (max(0.0, centre - half), min(1.0, centre + half))


def draw_trials(con: duckdb.DuckDBPyConnection, features: Sequence[int], n_trials: int, seed: int) -> list[Trial]:
    """n_trials pairs of distinct features with enough top images, the order and the held-out image from the seed."""
    tops = {f: ids for f, (ids, _) in top_image_sets(con, features, HELD_OUT_RANKS[1]).items()}
    usable = sorted(f for f, ids in tops.items() if len(ids) >= HELD_OUT_RANKS[0])
    if len(usable) < 2:
        raise DataError(
            f"Sort Eval needs two features with at least {HELD_OUT_RANKS[0]} top images; {len(usable)} have them",
            "choose more frequent features, or index more images",
        )
    rng = random.Random(seed)
    trials = []
    for number in range(n_trials):
        first, second = rng.sample(usable, 2)
        owner = rng.choice((first, second))
        other = second if owner == first else first
        pool = [i for i in tops[owner][HELD_OUT_RANKS[0] - 1 :] if i not in tops[other][:GRID_IMAGES]]
        held = rng.choice(pool) if pool else tops[owner][-1]
        grid_a = tuple(i for i in tops[first] if i != held)[:GRID_IMAGES]
        grid_b = tuple(i for i in tops[second] if i != held)[:GRID_IMAGES]
        trials.append(Trial(number, first, second, held, "1" if owner == first else "2", grid_a, grid_b))
    return trials


def parse_choice(text: str) -> str | None:
    """'1' or '2' from an answer (the first such digit standing alone), None when there is none."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL | re.IGNORECASE)
    match = re.search(r"(?<![\d.])([12])(?!\d|\.\d)", text)
    return match.group(1) if match else None


def trial_messages(con: duckdb.DuckDBPyConnection, trial: Trial, side: int, heatmap: bool) -> list[dict[str, Any]]:
    """The chat messages of one trial: the instruction, grid 1, grid 2 and the held-out image."""
    first = feature_grid(con, trial.feature_a, trial.grid_a, side, 3, heatmap)
    second = feature_grid(con, trial.feature_b, trial.grid_b, side, 3, heatmap)
    held = image_tiles(con, None, [trial.held_out], side * 2)[0]
    parts: list[dict[str, Any]] = [{"type": "text", "text": INSTRUCTION}]
    for label, image in (("Image 1:", first), ("Image 2:", second), ("Image 3:", held)):
        parts.append({"type": "text", "text": label})
        parts.append({"type": "image_url", "image_url": {"url": data_url(image)}})
    return [{"role": "user", "content": parts}]


def sort_eval(
    db: Path,
    endpoint: Endpoint,
    features: Sequence[int] | None = None,
    top: int | None = 100,
    n_trials: int = 50,
    seed: int = 0,
    side: int = 160,
    heatmap: bool = False,
    progress: Progress | None = None,
) -> SortEvalResult:
    """Run (or resume) a Sort Eval over the chosen features (default: the 100 most frequent alive ones)."""
    from saetui.naming.explain import choose_features

    if n_trials < 1:
        raise UsageError("--trials must be at least 1", "e.g. --trials 50")
    store = Annotations(db)
    con = connect(db, read_only=True)
    try:
        chosen = choose_features(con, features, top)
        trials = draw_trials(con, chosen, n_trials, seed)
        stored = store.trials(endpoint.model, PROMPT_VERSION, seed)
        stored = {t.trial: stored[t.trial] for t in trials if stored.get(t.trial, {}).get("feature_a") == t.feature_a}
        if progress is not None:
            progress(len(stored), len(trials), sum(int(r["correct"]) for r in stored.values()))
        asked = 0
        for trial in trials:
            if trial.trial in stored:
                continue
            answer = endpoint.chat(trial_messages(con, trial, side, heatmap), max_tokens=20)
            choice = parse_choice(answer.text)
            row = {
                "model": endpoint.model,
                "prompt_version": PROMPT_VERSION,
                "seed": seed,
                "trial": trial.trial,
                "feature_a": trial.feature_a,
                "feature_b": trial.feature_b,
                "held_out": trial.held_out,
                "truth": trial.truth,
                "answer": choice,
                "correct": int(choice == trial.truth),
                "created_at": now(),
            }
            store.add_trial(row)
            stored[trial.trial] = row
            asked += 1
            if progress is not None:
                progress(len(stored), len(trials), sum(int(r["correct"]) for r in stored.values()))
    finally:
        con.close()
    answered = [stored[t.trial] for t in trials]
    return SortEvalResult(endpoint.model, seed, len(answered), sum(int(r["correct"]) for r in answered), asked)

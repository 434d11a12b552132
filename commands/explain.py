"""`saetui explain` and `saetui sort-eval`: ask an OpenAI-compatible vision model about features."""

from __future__ import annotations

import os
import sys

import typer

from saetui.commands.options import (
    Database,
    EndpointUrl,
    Features,
    ModelName,
    RequestRate,
    Retries,
    Timeout,
    feature_list,
)

EXPLAIN_HELP = """Ask a vision-language model what each feature detects, and store its answer.

Each feature's top images (the original files when readable, else the stored thumbnails; 3 x 3 by default)
with its patch heatmap go as one image part (a data URL) to an OpenAI-compatible chat-completions endpoint:
OpenAI, or a local vLLM, SGLang or Ollama server. The answer is stored in the database's side file
(saetui.notes.sqlite) with the model, prompt version, endpoint, image ids, token counts and time; SQL sees it as
the table explanations, the browser on the feature page and in the list. Nothing is sent anywhere unless you name
the endpoint (--endpoint or $SAETUI_ENDPOINT). The API key comes from $SAETUI_API_KEY, else $OPENAI_API_KEY.

A 429 waits for Retry-After; 5xx answers, timeouts and malformed bodies are retried with backoff. Answers are
stored one by one, so a killed run resumes: features this model already explained with this prompt are not asked
again (--force asks again). A line on stderr shows progress, tokens and, with --price, the cost.

Examples:

  saetui explain --top 20 --endpoint http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct

  SAETUI_ENDPOINT=https://api.openai.com/v1 saetui explain --features 12,345 --model gpt-4o-mini --price 0.15,0.6
"""

SORT_HELP = """Score an SAE (or chosen features) with Sort Eval, CLIP-Scope's protocol: the model sees two features'
3 x 3 grids of top images and a held-out image (from ranks 10-20 of one of them, in neither grid) and says which
feature it belongs to. The score is the share answered right (0.5 is chance), with a 95% interval.

Trials come from --seed over the chosen features (default: the 100 most frequent alive ones); every answer is
stored in the side file (table sort_eval), so a rerun with the same seed asks only what is missing. The endpoint
options are those of `saetui explain`.

Examples:

  saetui sort-eval --trials 100 --endpoint http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
"""


def _endpoint(url: str | None, model: str | None, timeout: float, retries: int, rate: float | None):  # noqa: ANN202
    """The endpoint client from the options (a missing URL or model is a usage error, nothing is sent)."""
    from saetui.errors import UsageError
    from saetui.naming.endpoint import Endpoint, RateLimiter

    if url is None:
        raise UsageError(
            "no endpoint named: saetui sends images only where you say",
            "pass --endpoint http://HOST:PORT/v1 (or set $SAETUI_ENDPOINT)",
        )
    if model is None:
        raise UsageError("no model named", "pass --model NAME (or set $SAETUI_MODEL)")
    key = os.environ.get("SAETUI_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return Endpoint(url, model, key, timeout=timeout, retries=retries, limiter=RateLimiter(rate))


def _prices(text: str | None) -> tuple[float, float] | None:
    """--price IN,OUT in dollars per million tokens."""
    from saetui.errors import UsageError

    if text is None:
        return None
    try:
        prompt, completion = (float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(
            f"--price {text!r} is not IN,OUT", "dollars per million tokens, e.g. --price 0.15,0.6"
        ) from None
    return prompt, completion


def register(app: typer.Typer) -> None:
    """Add the `explain` and `sort-eval` commands to the root app."""

    @app.command("explain", help=EXPLAIN_HELP)
    def explain_command(
        features: Features = None,
        top: int | None = typer.Option(None, "--top", min=1, help="The N most frequent alive features."),
        endpoint: EndpointUrl = None,
        model: ModelName = None,
        images: int = typer.Option(9, "--images", min=1, max=64, help="Top images per grid."),
        columns: int = typer.Option(3, "--columns", min=1, help="Tiles per grid row."),
        tile: int = typer.Option(224, "--tile", min=32, max=1024, help="Tile side in pixels."),
        heatmap: bool = typer.Option(True, "--heatmap/--no-heatmap", help="Draw the feature's patch heatmap."),
        thumbnails: bool = typer.Option(False, "--thumbnails", help="Use the stored thumbnails, not the originals."),
        concurrency: int = typer.Option(1, "--concurrency", min=1, max=64, help="Requests in flight at once."),
        rate: RequestRate = None,
        retries: Retries = 5,
        timeout: Timeout = 120.0,
        price: str | None = typer.Option(None, "--price", help="Dollars per 1M prompt,completion tokens."),
        force: bool = typer.Option(False, "--force", help="Ask again for features already explained."),
        db: Database = None,
    ) -> None:
        """Explain features with a vision-language model."""
        from saetui.naming.explain import PROMPT_VERSION, ExplainOptions, ExplainProgress, explain_features
        from saetui.paths import default_db
        from saetui.progress import Progress

        client = _endpoint(endpoint, model, timeout, retries, rate)
        prices = _prices(price)
        options = ExplainOptions(images, columns, tile, heatmap, not thumbnails, concurrency, force=force)

        bar: list[Progress] = []

        def show(state: ExplainProgress) -> None:
            """The first call says what is left to ask; each answer advances the stderr progress line."""
            if not bar:
                if state.skipped:
                    sys.stderr.write(
                        f"explain: {state.skipped} of {state.total} features already explained by {client.model} "
                        f"(prompt {PROMPT_VERSION}); asking for the rest\n"
                    )
                bar.append(Progress(state.total - state.skipped, "explain", unit="features"))
                return
            cost = ""
            if prices is not None:
                dollars = (state.prompt_tokens * prices[0] + state.completion_tokens * prices[1]) / 1e6
                cost = f" ${dollars:.4f}"
            tokens = f"{state.prompt_tokens:,}+{state.completion_tokens:,} tokens{cost}"
            bar[0].advance(1, f"{tokens} · #{state.last_feature}: {state.last_text[:40]}")

        state = explain_features(
            db if db is not None else default_db(), client, feature_list(features), top, options, show
        )
        if bar:
            bar[0].close()
        skipped = f", {state.failed_features} without top images" if state.failed_features else ""
        typer.echo(f"explained {state.done} features ({state.skipped} already explained{skipped})")

    @app.command("sort-eval", help=SORT_HELP)
    def sort_eval_command(
        features: Features = None,
        top: int = typer.Option(100, "--top", min=2, help="Draw pairs from the N most frequent alive features."),
        trials: int = typer.Option(50, "--trials", min=1, help="Number of trials."),
        seed: int = typer.Option(0, "--seed", help="Seed of the pairs and held-out images."),
        tile: int = typer.Option(160, "--tile", min=32, max=1024, help="Tile side in pixels."),
        heatmap: bool = typer.Option(False, "--heatmap/--no-heatmap", help="Draw heatmaps on the two grids."),
        endpoint: EndpointUrl = None,
        model: ModelName = None,
        rate: RequestRate = None,
        retries: Retries = 5,
        timeout: Timeout = 120.0,
        db: Database = None,
    ) -> None:
        """Score features with Sort Eval."""
        from saetui.naming.sort_eval import sort_eval
        from saetui.paths import default_db
        from saetui.progress import Progress

        client = _endpoint(endpoint, model, timeout, retries, rate)

        bar: list[Progress] = []

        def show(done: int, total: int, correct: int) -> None:
            """The first call says what is stored already; each answer advances the stderr progress line."""
            if not bar:
                if done:
                    sys.stderr.write(f"sort-eval: {done} of {total} trials already answered; asking for the rest\n")
                bar.append(Progress(total - done, "sort-eval", unit="trials"))
                return
            bar[0].advance(1, f"{correct}/{done} right")

        result = sort_eval(
            db if db is not None else default_db(),
            client,
            feature_list(features),
            top,
            trials,
            seed,
            tile,
            heatmap,
            show,
        )
        if bar:
            bar[0].close()
        low, high = result.interval()
        typer.echo(
            f"Sort Eval ({result.model}, seed {result.seed}): {result.accuracy:.3f} = {result.correct}/{result.trials}"
            f" trials right (95% CI {low:.3f}-{high:.3f}; chance 0.5); {result.asked} asked now"
        )

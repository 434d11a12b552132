"""The overview: the run behind the database, feature counts, the frequency histogram and the error maps."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from saetui.errors import SaetuiError
from saetui.tiles import VIRIDIS, patch_grid
from saetui.tui.charts import bar_rows, number
from saetui.tui.data import Overview
from saetui.tui.heat import grid_text, legend, normalise, swatch
from saetui.tui.messages import LoadFailed, OverviewLoaded
from saetui.tui.navigation import Location
from saetui.tui.screens.base import PageScreen

RUN_KEYS = (
    "sae_family",
    "model_id",
    "pretrained",
    "layer",
    "hook",
    "sae_name",
    "sae_repo",
    "sae_file",
    "sae_checkpoint",
    "k",
    "activation",
    "normalisation",
    "n_features",
    "tokens",
    "precision",
    "source",
)


class OverviewScreen(PageScreen):
    """Dataset-wide numbers; loaded once per session."""

    page_title = "overview"

    def __init__(self) -> None:
        """Nothing loaded yet."""
        super().__init__()
        self.overview: Overview | None = None

    def compose_page(self) -> ComposeResult:
        """Run facts and counts on top, histogram and maps side by side below."""
        with VerticalScroll(id="overview-body"):
            with Horizontal(id="overview-top"):
                yield Static("loading…", id="run-info")
                yield Static("", id="counts")
            with Horizontal(id="overview-charts"):
                with Vertical(classes="panel"):
                    yield Static("Feature frequency (alive features per bin)", classes="section-title")
                    yield Static("", id="frequency-histogram")
                with Vertical(classes="panel"):
                    yield Static("Mean reconstruction error by token position", classes="section-title")
                    yield Static("", id="position-errors")

    def apply_target(self, location: Location) -> None:
        """Load once."""
        if self.overview is None:
            self.load_overview()

    @work(thread=True, exclusive=True, group="overview", exit_on_error=False)
    def load_overview(self) -> None:
        """Query the summaries in a worker."""
        try:
            overview = self.browser.data.overview()
        except SaetuiError as error:
            self.post_message(LoadFailed("the overview", error.one_line()))
            return
        self.post_message(OverviewLoaded(overview))

    @on(LoadFailed)
    def show_failure(self, message: LoadFailed) -> None:
        """Say why there is nothing to show."""
        self.query_one("#run-info", Static).update(Text(f"cannot show {message.what}: {message.error}", "red"))

    @on(OverviewLoaded)
    def show_overview(self, message: OverviewLoaded) -> None:
        """Fill every part."""
        self.overview = o = message.overview
        self.query_one("#run-info", Static).update(self.run_table(o))
        self.query_one("#counts", Static).update(self.counts_text(o))
        if o.frequency_bins:
            rows = [(f"{number(b.lo, 2)}–{number(b.hi, 2)}", float(b.count), f"{b.count:,}") for b in o.frequency_bins]
            self.query_one("#frequency-histogram", Static).update(bar_rows(rows, 44))
        else:
            self.query_one("#frequency-histogram", Static).update(Text("no features table: run `saetui stats`", "dim"))
        self.query_one("#position-errors", Static).update(self.position_text(o))

    def run_table(self, o: Overview) -> Table:
        """The run's identity as a two-column table (known keys first)."""
        table = Table(show_header=False, box=None, padding=(0, 1), title="Run", title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        values = dict(o.run)
        for key in RUN_KEYS:
            if key in values:
                table.add_row(key, values[key])
        if "approximate" in values:  # e.g. saev's input scaling, estimated by saetui: the codes are not the release's
            table.add_row(Text("approximate", "bold yellow"), Text(values["approximate"], "yellow"))
        if not values:
            table.add_row("run", "no runs table")
        return table

    def counts_text(self, o: Overview) -> Text:
        """Images, tokens, features, and reconstruction quality."""
        text = Text()
        text.append("Data\n", "bold")
        text.append(f"images   {o.n_images:,}\n")
        text.append(f"tokens   {o.n_tokens:,}\n")
        if o.skipped:
            text.append(f"skipped  {o.skipped:,} (see the skipped table)\n")
        text.append(f"features {o.n_features:,}: ")
        text.append(f"{o.alive:,} alive", "green")
        text.append(" · ")
        text.append(f"{o.dead:,} dead\n", "red" if o.dead else "")
        if o.explained_variance is not None:
            text.append(f"explained variance {o.explained_variance:.3f}\n")
        if o.nmse is not None:
            text.append(f"normalised MSE     {o.nmse:.3f}\n")
        if o.missing:
            text.append(f"missing: {', '.join(o.missing)} (run `saetui stats`)", "yellow")
        return text

    def position_text(self, o: Overview) -> Text:
        """The mean-sse map on the run's patch grid plus CLS and the explained variance range."""
        sse = o.position_sse
        if not np.isfinite(sse).any():
            return Text("no position errors: run `saetui stats`", "dim")
        finite = sse[np.isfinite(sse)]
        low, high = float(finite.min()), float(finite.max())
        grid = patch_grid(sse, self.browser.data.grid)
        text = grid_text(normalise(grid, low, high), VIRIDIS, scale=2 if self.app.size.height >= 40 else 1)
        cls = float(sse[0])
        text.append("\nCLS ")
        text.append("  ", swatch((cls - low) / (high - low) if high > low and np.isfinite(cls) else 0.0))
        text.append(f" {cls:.3g}   ")
        text.append_text(legend(f"{low:.3g}", f"{high:.3g}"))
        ev = o.position_ev
        if np.isfinite(ev).any():
            patches = ev[1:][np.isfinite(ev[1:])]
            text.append(f"\nexplained variance: CLS {ev[0]:.3f} · patches {patches.min():.3f}–{patches.max():.3f}")
        return text

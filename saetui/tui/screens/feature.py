"""A feature's page: stats header, top-image grid with a patch-heatmap overlay, labels, lens, neighbours, histogram.

The text appears as soon as one worker has queried it; a second worker then renders the thumbnails one by one
(from the database's stored JPEGs, so the original files are not needed) and each tile fills when ready.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Grid, Vertical, VerticalScroll
from textual.widgets import Static
from textual.worker import get_current_worker

from saetui import tiles
from saetui.errors import SaetuiError
from saetui.tiles import HEAT, patch_grid
from saetui.tui.charts import bar_rows, column_chart, number, percent
from saetui.tui.data import FeaturePage, TopImage
from saetui.tui.heat import grid_text, normalise
from saetui.tui.messages import FeatureLoaded, LoadFailed, ThumbnailReady
from saetui.tui.navigation import Location
from saetui.tui.screens.base import PageScreen
from saetui.tui.screens.features import FeaturesScreen
from saetui.tui.screens.note_editor import EditedNote, NoteEditor
from saetui.tui.widgets.feature_links import FeatureLinks
from saetui.tui.widgets.thumbnail import TILE_COLUMNS, TILE_ROWS, ThumbTile

LENS_NOTE = (
    "The lens maps the feature's decoder direction straight through the final LayerNorm and projection, "
    "skipping every layer after the hooked one, so it often disagrees with what the feature fires on."
)
SCORE_TITLES = {"monosemanticity": "monosemanticity (MS)", "clip_auroc": "explanation CLIP AUROC"}
TILE_WIDTH = TILE_COLUMNS + 2
MAX_TILE_ROWS = 3
WIDE_FROM = 140  # from this width the panels sit beside the thumbnails (the app's -wide breakpoint)
PANEL_WIDTH = 50


class FeatureScreen(PageScreen):
    """One feature; n/p flip through the features list in its current order."""

    page_title = "feature"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "toggle_heatmap", "Heatmap", id="toggle-heatmap"),
        Binding("n", "flip(1)", "Next", id="next-feature"),
        Binding("p", "flip(-1)", "Prev", id="previous-feature"),
        Binding("t", "focus_part('thumbs')", "Thumbs", show=False),
        Binding("c", "focus_part('coactivating')", "Coactivating", id="focus-coactivating"),
        Binding("v", "focus_part('similar')", "Similar", id="focus-similar"),
        Binding("e", "edit_note", "Note", id="edit-note"),
    ]

    def __init__(self) -> None:
        """A page with no feature yet."""
        super().__init__()
        self.feature: int | None = None
        self.page: FeaturePage | None = None
        self.heatmap = True

    def compose_page(self) -> ComposeResult:
        """Header, thumbnails, and the panels below them."""
        with VerticalScroll(id="feature-body"):
            yield Static("", id="feature-header")
            with Container(id="feature-main"):
                with Vertical(id="thumbs-area"):
                    yield Static("", id="thumbs-title", classes="section-title")
                    yield Grid(id="thumbs")
                yield from self.compose_panels()

    def compose_panels(self) -> ComposeResult:
        """Labels, lens, neighbour lists and histogram (beside the thumbnails when wide, below when narrow)."""
        with Grid(id="feature-panels"):
            with Vertical(classes="panel"):
                yield Static("Labels of the top images", classes="section-title", id="labels-title")
                yield Static("", id="labels")
            with Vertical(classes="panel"):
                yield Static("Logit lens", classes="section-title")
                yield Static("", id="lens")
            with Vertical(classes="panel"):
                yield Static("Coactivating (token level) · Enter opens", classes="section-title")
                yield FeatureLinks(id="coactivating")
            with Vertical(classes="panel"):
                yield Static("Similar directions (decoder cosine) · Enter opens", classes="section-title")
                yield FeatureLinks(id="similar")
            with Vertical(classes="panel"):
                yield Static("Activation histogram (active tokens, log2 bins)", classes="section-title")
                yield Static("", id="histogram")

    def on_resize(self) -> None:
        """Fit as many tile columns as the thumbnail area allows; panels in two columns below when narrow."""
        self.query_one("#thumbs", Grid).styles.grid_size_columns = self.tile_columns()
        self.query_one("#feature-panels", Grid).styles.grid_size_columns = 1 if self.is_wide() else 2

    def is_wide(self) -> bool:
        """Whether the panels sit beside the thumbnails (the app's -wide breakpoint)."""
        return self.app.size.width >= WIDE_FROM

    def tile_columns(self) -> int:
        """Tiles per row in the thumbnail area."""
        area = self.app.size.width - 3 - (PANEL_WIDTH + 2 if self.is_wide() else 0)
        return max(1, area // TILE_WIDTH)

    def tile_count(self) -> int:
        """How many top images to show at the current width."""
        return self.tile_columns() * MAX_TILE_ROWS

    def apply_target(self, location: Location) -> None:
        """Show a feature: its number and 'loading' at once, then the text, then the thumbnails."""
        if location.key is None or location.key == self.feature:
            return
        self.feature = int(location.key)
        self.page = None
        self.query_one("#feature-header", Static).update(Text(f"Feature {self.feature}  ·  loading…", "bold"))
        self.query_one("#feature-body", VerticalScroll).scroll_home(animate=False)
        self.load_page(self.feature)

    @work(thread=True, exclusive=True, group="feature-page", exit_on_error=False)
    def load_page(self, feature: int) -> None:
        """Query the page's text (one cursor, a worker thread)."""
        try:
            page = self.browser.data.feature_page(feature, top_images=self.tile_count())
        except SaetuiError as error:
            self.post_message(LoadFailed(f"feature {feature}", error.one_line()))
            return
        self.post_message(FeatureLoaded(page))

    @on(LoadFailed)
    def show_failure(self, message: LoadFailed) -> None:
        """Say why the page is empty."""
        self.query_one("#feature-header", Static).update(Text(f"cannot show {message.what}: {message.error}", "red"))

    @on(FeatureLoaded)
    def show_page(self, message: FeatureLoaded) -> None:
        """Fill every text part, lay out blank tiles and start rendering their pixels."""
        page = message.page
        if page.stats.feature != self.feature:
            return
        self.page = page
        self.query_one("#feature-header", Static).update(self.header_text(page))
        self.query_one("#labels-title", Static).update(self.labels_title(page))
        width = PANEL_WIDTH - 2 if self.is_wide() else max(20, (self.size.width - 8) // 2)
        self.query_one("#labels", Static).update(
            bar_rows([(s.label, s.share, f"{s.share:.0%} ({s.count})") for s in page.labels[:8]], width)
            if page.labels
            else Text("no labelled images among the top images", "dim")
        )
        self.query_one("#lens", Static).update(self.lens_text(page, width))
        self.query_one("#coactivating", FeatureLinks).show(page.coactivating, "no coactivation data")
        self.query_one("#similar", FeatureLinks).show(page.similar, page.similar_note or "no similar features")
        self.query_one("#histogram", Static).update(self.histogram_text(page))
        self.layout_tiles(page.top_images)
        self.start_thumbnails()

    def header_text(self, page: FeaturePage) -> Text:
        """Two lines of numbers about the feature."""
        s = page.stats
        text = Text()
        text.append(f"Feature {s.feature}", "bold")
        if s.dead:
            text.append("  dead (never active)", "red")
        text.append(f"   freq {percent(s.frequency)} of tokens · {percent(s.image_frequency)} of images")
        text.append(f"\nmax {number(s.max_value)} · mean {number(s.mean_value)}")
        if s.label_entropy is not None:
            norm = f" ({s.label_entropy_norm:.2f} of max)" if s.label_entropy_norm is not None else ""
            text.append(f" · label entropy {s.label_entropy:.2f} nats{norm}")
        if s.top_label:
            share = f" {s.top_label_share:.0%}" if s.top_label_share is not None else ""
            text.append(" · top label ")
            text.append(f"{s.top_label}{share}", "bold")
        if page.note is not None:
            text.append("\nnote ", "bold")
            if page.note.tags:
                text.append(" ".join(f"#{tag}" for tag in page.note.tags) + " ", "bold magenta")
            text.append(page.note.text, "italic")
        if page.explanation is not None:
            text.append("\nexplanation ", "bold")
            text.append(str(page.explanation["explanation"]))
            text.append(f"  ({page.explanation['model']}, prompt {page.explanation['prompt_version']})", "dim")
        scores = {name: value for name, value in page.scores.items() if value is not None}
        if scores:
            text.append("\nscores ", "bold")
            text.append(" · ".join(f"{SCORE_TITLES.get(name, name)} {value:.3f}" for name, value in scores.items()))
        m = page.match
        if m is not None:
            text.append(f"\nbest match in {m.database}: ")
            if m.feature is None:
                text.append("none (no shared top images)", "dim")
            else:
                text.append(f"#{m.feature}", "bold")
                text.append(f" Jaccard {m.jaccard:.2f} · {m.overlap} shared top images")
                text.append(" · mutual" if m.mutual else "")
                text.append(f" · {m.top_label}" if m.top_label else "")
        return text

    def labels_title(self, page: FeaturePage) -> str:
        """The label panel's title with the entropy."""
        s = page.stats
        if s.label_entropy is None:
            return "Labels of the top images (entropy: too few labelled)"
        return f"Labels of the top images · H = {s.label_entropy:.2f} nats"

    def lens_text(self, page: FeaturePage, width: int) -> Text:
        """Lens labels with cosine and probability, then the plain warning about what the lens skips."""
        if not page.lens:
            text = Text("no logit lens (run `saetui stats` with the model files)", "dim")
        else:
            text = bar_rows([(e.label, e.prob, f"cos {e.score:.2f} p {e.prob:.2f}") for e in page.lens[:6]], width)
        text.append("\n")
        text.append(LENS_NOTE, "italic dim")
        effect = page.effect
        if effect is not None:
            text.append(f"\n\nCausal effect (ablation on {effect.n_images} top images)\n", "bold")
            lowered = [(label, -delta, f"{delta:+.3f}") for label, delta in effect.supports[:4]]
            text.append_text(bar_rows(lowered, width))

            def share(value: float | None) -> str:
                """An overlap share, '-' when missing."""
                return "-" if value is None else f"{value:.0%}"

            text.append(
                f"\nagreement: lens~causal {share(effect.lens_causal)} · lens~labels {share(effect.lens_labels)}"
                f" · causal~labels {share(effect.causal_labels)}",
                "dim",
            )
        return text

    def histogram_text(self, page: FeaturePage) -> Text:
        """A column chart of the activation histogram with its value range."""
        if not page.histogram:
            return Text("no histogram", "dim")
        counts = [b.count for b in page.histogram]
        text = column_chart(counts, height=5)
        text.append(f"\n{number(page.histogram[0].lo)} … {number(page.histogram[-1].hi)}", "dim")
        text.append(f"   {sum(counts):,} active tokens", "dim")
        return text

    def layout_tiles(self, tops: tuple[TopImage, ...]) -> None:
        """Reuse (or add) one tile per top image, hide the rest, and caption them."""
        grid = self.query_one("#thumbs", Grid)
        tiles = list(grid.query(ThumbTile))
        missing = len(tops) - len(tiles)
        if missing > 0:
            new = [ThumbTile(self.browser.renderer.widget) for _ in range(missing)]
            grid.mount_all(new)
            tiles.extend(new)
        for i, tile in enumerate(tiles):
            tile.display = i < len(tops)
            if i < len(tops) and self.feature is not None:
                tile.show(tops[i].image_id, self.feature, tops[i].value, tops[i].label)
        mode = "on" if self.heatmap else "off"
        title = f"Top images ({len(tops)}) · heatmap {mode} (h) · Enter or click opens an image"
        self.query_one("#thumbs-title", Static).update(title if tops else "No image activates this feature")

    def start_thumbnails(self) -> None:
        """(Re)render the tiles' pixels for the current feature and overlay state."""
        if self.page is None or self.feature is None:
            return
        self.render_thumbnails((self.feature, self.heatmap), self.page.top_images)

    @work(thread=True, exclusive=True, group="thumbnails", exit_on_error=False)
    def render_thumbnails(self, request: tuple[int, bool], tops: tuple[TopImage, ...]) -> None:
        """Render each tile (thumbnail + optional overlay) and post it as soon as it is ready."""
        worker = get_current_worker()
        feature, heatmap = request
        data = self.browser.data
        renderer = self.browser.renderer
        size = renderer.pixels(TILE_COLUMNS, TILE_ROWS)
        vmax = max((t.value for t in tops), default=0.0)
        ids = [t.image_id for t in tops]
        thumbs = data.thumbnails(ids)
        maps = data.patch_values_of(ids, feature) if heatmap or renderer.widget is None else {}
        for index, top in enumerate(tops):
            if worker.is_cancelled:
                return
            if renderer.widget is None:
                values = maps[top.image_id]
                text = grid_text(normalise(patch_grid(values, data.grid), 0.0, vmax), HEAT)
                self.post_message(ThumbnailReady(request, index, None, text))
                continue
            key = (top.image_id, feature if heatmap else None, size)

            def make(top: TopImage = top) -> tiles.Image.Image:
                values = maps[top.image_id] if heatmap else None
                return tiles.render(thumbs.get(top.image_id), size, values, vmax, data.grid)

            self.post_message(ThumbnailReady(request, index, self.browser.image_cache.get(key, make)))

    @on(ThumbnailReady)
    def show_thumbnail(self, message: ThumbnailReady) -> None:
        """Put rendered pixels into their tile (if the user is still on that feature and overlay state)."""
        if message.request != (self.feature, self.heatmap):
            return
        tiles = list(self.query_one("#thumbs", Grid).query(ThumbTile))
        if message.index < len(tiles):
            tiles[message.index].set_image(message.image, message.text)

    def action_toggle_heatmap(self) -> None:
        """Turn the patch-heatmap overlay on or off."""
        self.heatmap = not self.heatmap
        if self.page is not None:
            self.layout_tiles(self.page.top_images)
        self.start_thumbnails()

    def action_edit_note(self) -> None:
        """Open the note editor for this feature; saving writes the side file and refreshes page and list."""
        if self.feature is None or self.page is None:
            return
        feature = self.feature

        def saved(result: EditedNote | None) -> None:
            """Write the edited note (a quick SQLite write) and show it."""
            if result is None:
                return
            try:
                note = self.browser.data.save_note(feature, *result)
            except SaetuiError as error:
                self.notify(f"note not saved: {error.one_line()}", severity="error", timeout=8)
                return
            if self.page is not None and self.page.stats.feature == feature:
                self.page = replace(self.page, note=note)
                self.query_one("#feature-header", Static).update(self.header_text(self.page))
            features = self.browser.get_screen("features")
            if isinstance(features, FeaturesScreen):
                features.reload_annotations()
            self.notify(f"note on feature {feature} saved" if note else f"note on feature {feature} deleted")

        self.app.push_screen(NoteEditor(feature, self.page.note), saved)

    def action_flip(self, step: int) -> None:
        """Open the next (1) or previous (-1) feature of the features list."""
        if self.feature is not None:
            target = self.browser.adjacent_feature(self.feature, step)
            if target is not None:
                self.browser.open_feature(target)

    def action_focus_part(self, part: str) -> None:
        """Move the focus to the thumbnails or one of the feature lists."""
        if part == "thumbs":
            tiles = [t for t in self.query_one("#thumbs", Grid).query(ThumbTile) if t.display]
            if tiles:
                tiles[0].focus()
        else:
            self.query_one(f"#{part}", FeatureLinks).focus()

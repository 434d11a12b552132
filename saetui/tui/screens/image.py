"""An image's page: the image with a chosen feature's heatmap, its strongest features and its per-token error."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import OptionList, Static

from saetui import tiles
from saetui.errors import SaetuiError
from saetui.tiles import HEAT, VIRIDIS, patch_grid
from saetui.tui.data import ImagePage, Neighbour
from saetui.tui.heat import grid_text, legend, normalise, swatch
from saetui.tui.messages import ImageLoaded, ImagePixelsReady, LoadFailed, SteerReady
from saetui.tui.navigation import Location
from saetui.tui.screens.base import PageScreen
from saetui.tui.steer_panel import DEFAULT_SCALE
from saetui.tui.widgets.feature_links import FeatureLinks

NARROW = (32, 16)  # image cells below 120 columns
WIDE = (48, 24)


class ImageScreen(PageScreen):
    """One image; moving through its feature list changes the heatmap, Enter opens the feature."""

    page_title = "image"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "toggle_heatmap", "Heatmap", id="image-heatmap"),
        Binding("s", "steer", "Steer the highlighted feature (scale x its max)", show=False),
        Binding("a", "ablate", "Ablate the highlighted feature", show=False),
        Binding("plus", "scale(1)", "Raise the steering scale", show=False),
        Binding("minus", "scale(-1)", "Lower the steering scale", show=False),
        Binding("t", "attribute", "Features by attribution to the top-1 class", show=False),
    ]

    def __init__(self) -> None:
        """A page with no image yet."""
        super().__init__()
        self.image_id: int | None = None
        self.heat_feature: int | None = None
        self.page: ImagePage | None = None
        self.heatmap = True
        self.scale = DEFAULT_SCALE
        self._image_widget: Any = None

    def compose_page(self) -> ComposeResult:
        """Image + caption on the left, features on the right, token maps below."""
        with VerticalScroll(id="image-body"):
            yield Static("", id="image-header")
            with Horizontal(id="image-top"):
                with Vertical(id="image-left"):
                    widget = self.browser.renderer.widget
                    if widget is not None:
                        self._image_widget = widget(None, id="image-view")
                        yield self._image_widget
                    else:
                        yield Static("", id="image-view")
                    yield Static("", id="image-caption")
                with Vertical(id="image-right"):
                    yield Static(
                        "Strongest features (max over tokens) · ↑↓ heatmap · Enter opens", classes="section-title"
                    )
                    yield FeatureLinks(id="image-features")
            with Horizontal(id="image-maps"):
                with Vertical(classes="panel"):
                    yield Static("", id="heat-title", classes="section-title")
                    yield Static("", id="heat-map")
                with Vertical(classes="panel"):
                    yield Static("Reconstruction error per token (sse)", classes="section-title")
                    yield Static("", id="error-map")
            steer = Static("", id="steer")
            steer.display = False  # shown once the user steers (s, a, +/-)
            yield steer

    def image_cells(self) -> tuple[int, int]:
        """Cells of the large image at the current width."""
        return WIDE if self.app.size.width >= 120 else NARROW

    def on_resize(self) -> None:
        """Size the image for the width."""
        columns, rows = self.image_cells()
        view = self.query_one("#image-view")
        view.styles.width = columns
        view.styles.height = rows

    def apply_target(self, location: Location) -> None:
        """Show an image (and which feature's heatmap)."""
        if location.key is None:
            return
        image_id = int(location.key)
        if image_id != self.image_id:
            self.image_id = image_id
            self.heat_feature = location.feature
            self.page = None
            self.query_one("#image-header", Static).update(Text(f"Image {image_id}  ·  loading…", "bold"))
            self.load_image(image_id)
        elif location.feature != self.heat_feature and location.feature is not None:
            self.heat_feature = location.feature
            self.refresh_heatmap()

    @work(thread=True, exclusive=True, group="image-page", exit_on_error=False)
    def load_image(self, image_id: int) -> None:
        """Query the image's row, features and errors."""
        try:
            page = self.browser.data.image_page(image_id)
        except SaetuiError as error:
            self.post_message(LoadFailed(f"image {image_id}", error.one_line()))
            return
        self.post_message(ImageLoaded(page))

    @on(LoadFailed)
    def show_failure(self, message: LoadFailed) -> None:
        """Say why the page is empty."""
        self.query_one("#image-header", Static).update(Text(f"cannot show {message.what}: {message.error}", "red"))

    @on(ImageLoaded)
    def show_page(self, message: ImageLoaded) -> None:
        """Fill the text and the lists, then render the image."""
        page = message.page
        if page.image_id != self.image_id:
            return
        self.page = page
        header = Text(f"Image {page.image_id}", "bold")
        header.append(f"  ·  {page.label or '(no label)'}")
        if page.width and page.height:
            header.append(f"  ·  {page.width}×{page.height}")
        if page.explained_variance is not None:
            header.append(f"  ·  explained variance {page.explained_variance:.3f}")
        header.append("\n")
        header.append(page.path or "(no path)", "dim")
        if page.path and not page.file_exists:
            header.append("  (file missing: showing the stored thumbnail)", "yellow")
        self.query_one("#image-header", Static).update(header)
        links = self.query_one("#image-features", FeatureLinks)
        links.show(
            [
                Neighbour(f.feature, f.value, f"max {f.value:.3g} · {f.n_tokens} tok", f.top_label)
                for f in page.features
            ],
            "no active features stored for this image",
        )
        known = [f.feature for f in page.features]
        if self.heat_feature is None and known:
            self.heat_feature = known[0]
        if self.heat_feature in known:
            links.highlighted = known.index(self.heat_feature)
        self.query_one("#error-map", Static).update(self.error_text(page.token_sse))
        self.refresh_heatmap()

    def error_text(self, sse: np.ndarray) -> Text:
        """The sse map on the run's patch grid, with CLS and a legend."""
        if not np.isfinite(sse).any():
            return Text("no token errors stored", "dim")
        finite = sse[np.isfinite(sse)]
        low, high = float(finite.min()), float(finite.max())
        text = grid_text(normalise(patch_grid(sse, self.browser.data.grid), low, high), VIRIDIS)
        text.append("\nCLS ")
        cls = float(sse[0])
        text.append("  ", swatch((cls - low) / (high - low) if high > low and np.isfinite(cls) else 0.0))
        text.append(f" {cls:.3g}\n" if np.isfinite(cls) else " –\n")
        text.append_text(legend(f"{low:.3g}", f"{high:.3g}"))
        return text

    def refresh_heatmap(self) -> None:
        """Redraw the text heatmap title and re-render the image for the chosen feature."""
        if self.image_id is None:
            return
        feature = self.heat_feature if self.heatmap else None
        title = f"Feature {self.heat_feature} on this image" if self.heat_feature is not None else "No feature"
        self.query_one("#heat-title", Static).update(title)
        self.render_image(self.image_id, self.heat_feature, feature is not None)

    @work(thread=True, exclusive=True, group="image-pixels", exit_on_error=False)
    def render_image(self, image_id: int, feature: int | None, overlay: bool) -> None:
        """Render the large image (with overlay) and the feature's text heatmap."""
        data = self.browser.data
        renderer = self.browser.renderer
        values = data.patch_values(image_id, feature) if feature is not None else None
        heat: Text
        if values is not None and values.max() > 0:
            vmax = float(values.max())
            heat = grid_text(normalise(patch_grid(values, data.grid), 0.0, vmax), HEAT)
            heat.append(f"\nCLS {values[0]:.3g} · max {vmax:.3g}\n")
            heat.append_text(legend("0", f"{vmax:.3g}", HEAT))
        else:
            heat = Text("the feature is not active on this image", "dim")
        pixels = None
        if renderer.widget is not None:
            size = renderer.pixels(*self.image_cells())
            key = (image_id, feature if overlay else None, size)

            def make() -> tiles.Image.Image:
                thumb = data.thumbnail(image_id)
                if overlay and values is not None:
                    return tiles.render(thumb, size, values, float(values.max()), data.grid)
                return tiles.render(thumb, size)

            pixels = self.browser.image_cache.get(key, make)
        self.post_message(ImagePixelsReady(image_id, feature, pixels, heat))

    @on(ImagePixelsReady)
    def show_pixels(self, message: ImagePixelsReady) -> None:
        """Show the rendered image and heatmap if they are still the ones wanted."""
        if message.image_id != self.image_id or message.feature != self.heat_feature:
            return
        self.query_one("#heat-map", Static).update(message.heat)
        if self._image_widget is not None and message.image is not None:
            self._image_widget.image = message.image
        elif self._image_widget is None:
            self.query_one("#image-view", Static).update(message.heat)
        caption = "heatmap of feature " + str(self.heat_feature) if self.heatmap else "heatmap off (h)"
        self.query_one("#image-caption", Static).update(Text(caption, "dim"))

    @on(OptionList.OptionHighlighted, "#image-features")
    def choose_feature(self, event: OptionList.OptionHighlighted) -> None:
        """Moving through the list shows that feature's heatmap."""
        if event.option.id is None or self.image_id is None:
            return
        feature = int(event.option.id)
        if feature != self.heat_feature:
            self.heat_feature = feature
            self.browser.history.replace(Location("image", self.image_id, feature))
            self.refresh_heatmap()

    def action_scale(self, step: int) -> None:
        """Change the steering scale by step and steer again."""
        self.scale += step
        self.action_steer()

    def action_ablate(self) -> None:
        """Ablate the highlighted feature (steer to 0)."""
        self.start_steer(0.0)

    def action_steer(self) -> None:
        """Steer the highlighted feature to the current scale."""
        self.start_steer(self.scale)

    def action_attribute(self) -> None:
        """Rank the image's features by attribution to its top-1 class."""
        if self.image_id is None:
            return
        panel = self.query_one("#steer", Static)
        panel.display = True
        panel.update(Text("attributing (loading the model the first time)…", "dim"))
        self.run_attribution(self.image_id)

    @work(thread=True, exclusive=True, group="image-steer", exit_on_error=False)
    def run_attribution(self, image_id: int) -> None:
        """Gradient x activation through the rest of the model (torch, off the UI thread)."""
        try:
            report = self.browser.steering.attribution(image_id)
        except SaetuiError as error:
            report = Text(f"cannot attribute: {error.one_line()}", "red")
        self.post_message(SteerReady(image_id, report))

    def start_steer(self, scale: float) -> None:
        """Show that steering runs, then compute it in a worker."""
        if self.image_id is None or self.heat_feature is None:
            return
        panel = self.query_one("#steer", Static)
        panel.display = True
        panel.update(Text(f"steering feature {self.heat_feature} (loading the model the first time)…", "dim"))
        self.run_steer(self.image_id, self.heat_feature, scale)

    @work(thread=True, exclusive=True, group="image-steer", exit_on_error=False)
    def run_steer(self, image_id: int, feature: int, scale: float) -> None:
        """Run the model from the hook on the edited activations (torch, off the UI thread)."""
        try:
            report = self.browser.steering.report(image_id, feature, scale)
        except SaetuiError as error:
            report = Text(f"cannot steer: {error.one_line()}", "red")
        self.post_message(SteerReady(image_id, report))

    @on(SteerReady)
    def show_steer(self, message: SteerReady) -> None:
        """Show the before/after classes if they belong to this image."""
        if message.image_id == self.image_id:
            self.query_one("#steer", Static).update(message.report)

    def action_toggle_heatmap(self) -> None:
        """Show the image with or without the overlay."""
        self.heatmap = not self.heatmap
        self.refresh_heatmap()

"""A list of related features (coactivating, similar, an image's strongest): Enter or a click opens one."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from saetui.tui.data import Neighbour
from saetui.tui.messages import OpenFeature


class FeatureLinks(OptionList):
    """Options whose ids are feature numbers; selecting one posts OpenFeature."""

    DEFAULT_CSS = """
    FeatureLinks { height: auto; max-height: 14; border: none; padding: 0; }
    """

    def show(self, neighbours: Sequence[Neighbour], empty: str) -> None:
        """Replace the options with neighbours, or one disabled line saying why there are none."""
        self.clear_options()
        if not neighbours:
            self.add_option(Option(Text(empty, style="dim"), disabled=True))
            return
        width = max(len(str(n.feature)) for n in neighbours)
        options = []
        for n in neighbours:
            prompt = Text(no_wrap=True, overflow="ellipsis")
            prompt.append(f"#{n.feature:<{width}} ", "bold")
            prompt.append(f"{n.detail} ", "dim")
            prompt.append(n.top_label or "")
            options.append(Option(prompt, id=str(n.feature)))
        self.add_options(options)
        self.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Turn a selection into a request to open that feature."""
        event.stop()
        if event.option.id is not None:
            self.post_message(OpenFeature(int(event.option.id)))

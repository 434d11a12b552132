"""Steering from the image page: the one place the browser reaches the model, loaded on first use in a worker.

The browser itself talks to the store; steering needs the rest of CLIP, so this module imports saetui.effects (and
with it torch) only when the user first steers, and keeps the loaded model for the session.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.text import Text

DEFAULT_SCALE = 5.0


class Steering:
    """Steer or ablate a feature of an indexed image and report the top classes before and after."""

    def __init__(self, db: Path) -> None:
        """Remember the database; nothing is loaded yet."""
        self.db = db
        self._context: Any = None
        self._lock = threading.Lock()

    def _ctx(self) -> tuple[Any, Any]:
        """The effect context (model, SAE, labels) and a read-only connection, built once."""
        from saetui.effects.context import open_context
        from saetui.store.connection import connect

        with self._lock:
            if self._context is None:
                con = connect(self.db)
                self._context = (open_context(con), con)
            return self._context

    def report(self, image_id: int, feature: int, scale: float) -> Text:
        """Top-5 classes of the image before and after setting the feature to scale x its max (0 ablates)."""
        from saetui.effects.interventions import hook_state
        from saetui.effects.steering import feature_max, image_path, steer_image

        ctx, con = self._ctx()
        with self._lock:
            path = image_path(con, str(image_id))
            peak = feature_max(con, feature)
        with self._lock:  # the connection also answers the nearest-images query
            result = steer_image(ctx, hook_state(ctx, ctx.pixels([path])), feature, scale * peak, con=con)
        what = "ablated" if scale == 0 else f"set to {scale:g} x max ({scale * peak:.3g})"
        text = Text(f"Feature {feature} {what}\n", "bold")
        text.append(f"{'before':<30}after\n", "dim")
        for (a, pa), (b, pb) in zip(result.before, result.after, strict=True):
            text.append(f"{pa:5.2f} {a[:23]:<24}{pb:5.2f} {b[:23]}\n")
        if result.nearest:
            text.append("nearest indexed images: ", "dim")
            text.append(", ".join(f"#{i} {label or '-'}" for i, label, _ in result.nearest))
        return text

    def attribution(self, image_id: int) -> Text:
        """The image's features ranked by attribution to its top-1 class, the top ones confirmed by ablation."""
        from saetui.effects.attribution import attribute
        from saetui.effects.interventions import hook_state
        from saetui.effects.steering import image_path

        ctx, con = self._ctx()
        with self._lock:
            path = image_path(con, str(image_id))
        result = attribute(ctx, hook_state(ctx, ctx.pixels([path])), 0, top=8, confirm=5)
        text = Text(f"Attribution to {result.label} (gradient x activation · exact ablation)\n", "bold")
        for feature, estimate, exact in zip(result.features, result.attribution, result.ablation, strict=True):
            text.append(f"#{feature:<7} {estimate:+.3f}   {'-' if exact is None else f'{exact:+.3f}'}\n")
        if result.sign_agreement is not None:
            text.append(f"sign agreement with ablation {result.sign_agreement:.0%}", "dim")
        return text

    def close(self) -> None:
        """Close the connection if one was opened."""
        if self._context is not None:
            self._context[1].close()

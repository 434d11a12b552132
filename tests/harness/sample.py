"""The real-image sample the tests read: 300 ImageNet validation images, one per class, committed under tests/data."""

from __future__ import annotations

from pathlib import Path

# ImageNet-style folder (one wnid folder per class, 6 of the 300 greyscale), short side reduced to 230 px.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "imagenet-sample"

"""The knobs of `saetui stats`: image-level scope, top-N sizes, logit-lens variant and coactivation sampling."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from saetui.errors import UsageError

ImageTokens = Literal["all", "cls", "patches"]
LensDirection = Literal["decoder", "encoder", "decoder+pre_b"]
LensTemplates = Literal["single", "imagenet80"]

IMAGE_TOKENS: tuple[str, ...] = ("all", "cls", "patches")
LENS_DIRECTIONS: tuple[str, ...] = ("decoder", "encoder", "decoder+pre_b")
LENS_TEMPLATES: tuple[str, ...] = ("single", "imagenet80")
SINGLE_TEMPLATE = "A photo of a {label}."


@dataclass(frozen=True)
class StatsOptions:
    """Every choice that changes the derived tables; stored in `stats_info` so a rerun knows what it computed."""

    image_tokens: ImageTokens = "all"  # tokens whose max is the image-level activation
    top_images: int = 200  # images kept per feature in feature_images (image_frequency stays exact)
    entropy_top: int = 100  # N: label entropy over the feature's top-N images
    entropy_min_labelled: int = 10  # fewer labelled firing images in the top N -> NULL entropy
    lens: bool = True  # compute the logit lens (needs the model and the checkpoint files)
    lens_direction: LensDirection = "decoder"
    lens_ln: bool = True  # pass the direction through the vision tower's final LayerNorm (ln_post)
    lens_templates: LensTemplates = "single"
    lens_top: int = 10  # labels kept per feature in logit_lens
    coactivation_sample: int = 256  # active tokens per feature used for the precomputed coactivation lists
    coactivation_top: int = 32  # partners kept per feature, by count and by Jaccard
    neighbours: int = 32  # similar-direction features precomputed per feature (0: on demand only)
    histogram_bins_per_octave: int = 4  # activation histogram resolution (log2-spaced bins)
    chunk_images: int = 2000  # images per pass over the activations (bounds memory)

    def __post_init__(self) -> None:
        """Reject values that cannot work, with the flag to fix."""
        if self.image_tokens not in IMAGE_TOKENS:
            raise UsageError(f"unknown image tokens {self.image_tokens!r}", "use all, cls or patches")
        if self.lens_direction not in LENS_DIRECTIONS:
            raise UsageError(f"unknown lens direction {self.lens_direction!r}", "use decoder, encoder or decoder+pre_b")
        if self.lens_templates not in LENS_TEMPLATES:
            raise UsageError(f"unknown lens templates {self.lens_templates!r}", "use single or imagenet80")
        positive = {
            "top images": self.top_images,
            "entropy top": self.entropy_top,
            "lens top": self.lens_top,
            "coactivation sample": self.coactivation_sample,
            "coactivation top": self.coactivation_top,
            "histogram bins per octave": self.histogram_bins_per_octave,
            "chunk images": self.chunk_images,
        }
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}", f"pass a positive {name}")
        if self.neighbours < 0:
            raise UsageError("neighbours must be >= 0", "pass 0 to skip the precomputed lists")
        if self.entropy_min_labelled < 0:
            raise UsageError("entropy min labelled must be >= 0", "pass 0 or more")
        if self.top_images < self.entropy_top:
            raise UsageError(
                f"top images ({self.top_images}) must be >= the label-entropy top N ({self.entropy_top})",
                "raise --top-images or lower --entropy-top",
            )

    def as_dict(self) -> dict[str, object]:
        """The options as a plain dict (stored as JSON in stats_info)."""
        return asdict(self)

"""The offline demo workspace behind `saetui demo`: a tiny RANDOM-weight CLIP and SAE, drawn images, a database.

Nothing is downloaded. The demo makes:
- a tiny open_clip CLIP with the ViT-L/14 geometry that matters to saetui (224 px, patch 14 so 257 tokens,
  24 blocks) at width 32, with seeded random weights, as an `hf-hub:`-style repo (open_clip_config.json,
  preprocessor_config.json, open_clip_model.safetensors);
- a TopK SAE on its layer 20 in exactly the CLIP-Scope .pt layout, with seeded random weights;
- both published into the demo's own hub cache (<dir>/cache/hub, the layout huggingface_hub writes: refs/main
  and snapshots/<commit>/...), so they resolve like fetched files (e.g. with HF_HUB_OFFLINE=1) and never mix with
  the real CLIP-Scope files in your own cache;
- labelled images drawn with PIL (eight classes of coloured shapes on textured backgrounds, ImageFolder layout);
then indexes the images with the real index engine and computes the statistics with the real stats engine.

Because the weights are random, the features say nothing about CLIP: the demo shows what the tool does. The
database file is named demo-random-weights.duckdb so every page of the browser says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image, ImageDraw

from saetui.hub import FetchedSae
from saetui.paths import cache_dir, hub_cache
from saetui.registry import DEMO_SPEC, SaeSpec

MODEL_REPO = DEMO_SPEC.model_repo
SAE_REPO = DEMO_SPEC.repo_id
LAYER = DEMO_SPEC.layer
WIDTH = DEMO_SPEC.d_in
BLOCKS = 24
EMBED_DIM = 16
N_FEATURES = DEMO_SPEC.n_features
K = DEMO_SPEC.k
SAE_FILE = DEMO_SPEC.file  # <layer>_resid/<tokens>.pt as in CLIP-Scope
TOKEN_COUNT = int(SAE_FILE.rsplit("/", 1)[1].removesuffix(".pt"))
DB_NAME = "demo-random-weights.duckdb"
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_WEIGHTS_NOTE = (
    "the demo's CLIP model and SAE have RANDOM weights: its features show what saetui does, not what CLIP "
    "learned. Fetch a real SAE with `saetui fetch layer20` and index your own images for real features."
)

# Classes of drawn images: (label, shape, object colour, background colour).
CLASSES: tuple[tuple[str, str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("red circle", "circle", (210, 40, 40), (40, 70, 45)),
    ("yellow square", "square", (240, 200, 30), (60, 60, 90)),
    ("blue triangle", "triangle", (40, 90, 220), (200, 190, 170)),
    ("white ring", "ring", (245, 245, 240), (30, 30, 35)),
    ("green stripes", "stripes", (40, 170, 70), (230, 230, 220)),
    ("orange diamond", "diamond", (250, 140, 30), (30, 60, 110)),
    ("purple cross", "cross", (140, 60, 180), (190, 220, 190)),
    ("black dots", "dots", (20, 20, 20), (220, 180, 120)),
)


@dataclass(frozen=True)
class DemoWorkspace:
    """What `build_demo` made: the database, the images, the cache and the published SAE and model."""

    root: Path
    db: Path
    images: Path
    cache: Path
    fetched: FetchedSae
    built: bool  # False when an existing workspace was reused


def demo_spec() -> SaeSpec:
    """The registry entry of the demo SAE (a single-file repo that `saetui demo` publishes into the cache)."""
    return DEMO_SPEC


def open_clip_config() -> dict[str, object]:
    """open_clip_config.json of the tiny model."""
    return {
        "model_cfg": {
            "embed_dim": EMBED_DIM,
            "vision_cfg": {"image_size": 224, "layers": BLOCKS, "width": WIDTH, "head_width": 16, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {"mean": list(MEAN), "std": list(STD)},
    }


def preprocessor_config() -> dict[str, object]:
    """preprocessor_config.json in the HF CLIPImageProcessor shape of the laion ports."""
    return {
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(MEAN),
        "image_processor_type": "CLIPImageProcessor",
        "image_std": list(STD),
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 224},
    }


def model_files(seed: int = 0) -> dict[str, bytes]:
    """The tiny model repo's files: configs and seeded random open_clip weights as safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save as save_safetensors

    cfg = open_clip_config()["model_cfg"]
    assert isinstance(cfg, dict)
    model = open_clip.model.CLIP(
        embed_dim=cfg["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**cfg["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**cfg["text_cfg"]),
    )
    generator = torch.Generator().manual_seed(seed)
    norms = {
        f"{name}.{kind}"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
        for kind in ("weight", "bias")
    }
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name == "logit_scale":
                value = torch.full(param.shape, math.log(1 / 0.07))
            elif name in norms:
                value = (1.0 if name.endswith("weight") else 0.0) + 0.1 * noise
            elif name.endswith("bias"):
                value = 0.02 * noise
            elif name.endswith(("class_embedding", "positional_embedding")):
                value = 0.5 * noise
            elif name.endswith(("out_proj.weight", "c_proj.weight")):
                value = noise / math.sqrt(param[0].numel() * 2 * BLOCKS)  # keeps 24 residual blocks O(1)
            else:
                value = noise / math.sqrt(param[0].numel() if param.ndim > 1 else 1)
            param.copy_(value)
    state = OrderedDict((k, v.detach().contiguous()) for k, v in model.state_dict().items())
    return {
        "open_clip_config.json": json.dumps(open_clip_config(), indent=2).encode(),
        "preprocessor_config.json": json.dumps(preprocessor_config(), indent=2).encode(),
        "open_clip_model.safetensors": save_safetensors(dict(state)),
        "README.md": b"# saetui demo model\n\nA tiny open_clip CLIP with RANDOM weights, made by `saetui demo`.\n",
    }


def sae_file(seed: int = 0) -> bytes:
    """A TopK SAE checkpoint in the CLIP-Scope .pt layout with seeded random weights."""
    import torch

    generator = torch.Generator().manual_seed(10_000 + seed)
    pre_b = 0.3 * torch.randn(WIDTH, generator=generator)
    enc = torch.randn(WIDTH, N_FEATURES, generator=generator) / math.sqrt(WIDTH)
    dec = torch.randn(N_FEATURES, WIDTH, generator=generator)
    dec = dec / dec.norm(dim=1, keepdim=True)
    checkpoint = {
        "model_state_dict": OrderedDict([("pre_b", pre_b), ("enc", enc.contiguous()), ("dec", dec.contiguous())]),
        "d_in": WIDTH,
        "n_features": N_FEATURES,
        "k": K,
        "token_count": TOKEN_COUNT,
        "n_iter": TOKEN_COUNT,
        "log_id": "saetui-demo-random-weights",
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


def publish(hub_dir: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Put a repo's files into a huggingface_hub cache as a download would; returns the snapshot folder.

    The layout is models--ORG--NAME/{blobs/<sha256>, snapshots/<commit>/<path> -> blob, refs/main = <commit>},
    with the commit derived from the contents (refs/main has no trailing newline: huggingface_hub reads it raw).
    """
    from huggingface_hub.file_download import repo_folder_name

    repo = hub_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
    commit = hashlib.sha1(b"".join(hashlib.sha256(files[p]).digest() for p in sorted(files))).hexdigest()
    snapshot = repo / "snapshots" / commit
    for path, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        target = snapshot / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(Path("../" * (len(Path(path).parts) + 1)) / "blobs" / blob.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def published(hub_dir: Path) -> FetchedSae | None:
    """The demo SAE and model as `saetui fetch` would return them, if both are in the cache."""
    from huggingface_hub.file_download import repo_folder_name

    found = {}
    for repo_id in (SAE_REPO, MODEL_REPO):
        repo = hub_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
        ref = repo / "refs" / "main"
        if not ref.is_file():
            return None
        found[repo_id] = repo / "snapshots" / ref.read_text().strip()
    checkpoint = found[SAE_REPO] / SAE_FILE
    model_dir = found[MODEL_REPO]
    needed = (checkpoint, model_dir / "open_clip_config.json", model_dir / "open_clip_model.safetensors")
    if not all(path.is_file() for path in needed):
        return None
    return FetchedSae(
        spec=demo_spec(),
        checkpoint_path=checkpoint,
        checkpoint_file=SAE_FILE,
        checkpoint_tokens=TOKEN_COUNT,
        sae_revision=found[SAE_REPO].name,
        model_dir=model_dir,
        model_config=model_dir / "open_clip_config.json",
        model_weights=model_dir / "open_clip_model.safetensors",
        model_revision=model_dir.name,
        preprocessor_config=model_dir / "preprocessor_config.json",
    )


def draw(
    rng: np.random.Generator, shape: str, colour: tuple[int, int, int], background: tuple[int, int, int]
) -> Image.Image:
    """One 256 x 256 picture: a textured background and the class's shape at a random place and size."""
    side = 256
    base = np.array(background, dtype=np.float32)
    noise = rng.normal(0, 14, size=(side, side, 1)).astype(np.float32)
    waves = np.sin(np.arange(side, dtype=np.float32) / rng.uniform(4, 12))[None, :, None] * 10
    image = Image.fromarray(np.clip(base + noise + waves, 0, 255).astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    size = int(rng.integers(70, 150))
    x0, y0 = (int(v) for v in rng.integers(10, side - size - 10, size=2))
    x1, y1 = x0 + size, y0 + size
    if shape == "circle":
        pen.ellipse((x0, y0, x1, y1), fill=colour)
    elif shape == "square":
        pen.rectangle((x0, y0, x1, y1), fill=colour)
    elif shape == "triangle":
        pen.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    elif shape == "ring":
        pen.ellipse((x0, y0, x1, y1), outline=colour, width=max(6, size // 8))
    elif shape == "stripes":
        for x in range(x0, x1, 16):
            pen.rectangle((x, y0, x + 7, y1), fill=colour)
    elif shape == "diamond":
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        pen.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "cross":
        third = size // 3
        pen.rectangle((x0 + third, y0, x1 - third, y1), fill=colour)
        pen.rectangle((x0, y0 + third, x1, y1 - third), fill=colour)
    else:
        for _ in range(int(rng.integers(6, 14))):
            cx, cy = (int(v) for v in rng.integers(x0, x1, size=2))
            r = int(rng.integers(6, 14))
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    return image


def draw_images(folder: Path, per_class: int, seed: int = 0) -> int:
    """Write per_class JPEGs of every class into folder/<label>/ (ImageFolder layout); returns the count."""
    rng = np.random.default_rng(seed)
    count = 0
    for label, shape, colour, background in CLASSES:
        target = folder / label
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(rng, shape, colour, background).save(target / f"{i:03d}.jpg", "JPEG", quality=90)
            count += 1
    return count


def _say(log: TextIO, message: str) -> None:
    """One progress line on the log stream."""
    log.write(f"saetui demo: {message}\n")
    log.flush()


def build_demo(
    root: str | Path | None = None,
    per_class: int = 12,
    rebuild: bool = False,
    log: TextIO | None = None,
    cache: str | Path | None = None,
) -> DemoWorkspace:
    """Make (or reuse) the demo workspace: the model and SAE published into the saetui cache (so the SAE is
    usable by name), drawn images and a database in root (default: <cache>/demo)."""
    from saetui.ingest.indexer import IndexOptions, index_images
    from saetui.ingest.sources import FolderSource
    from saetui.stats import SaeFiles, StatsOptions, compute_stats
    from saetui.store.connection import remove_database

    log = log if log is not None else sys.stderr
    cache = cache_dir(cache).absolute()
    root = (Path(root).expanduser() if root is not None else cache / "demo").absolute()
    hub_dir = hub_cache(cache)
    images = root / "images"
    db = root / DB_NAME
    existing = published(hub_dir)
    if existing is not None and db.is_file() and not rebuild:
        return DemoWorkspace(root, db, images, cache, existing, built=False)
    _say(log, RANDOM_WEIGHTS_NOTE)
    _say(log, f"publishing a tiny random-weight CLIP and SAE into {hub_dir}")
    publish(hub_dir, MODEL_REPO, model_files())
    publish(hub_dir, SAE_REPO, {SAE_FILE: sae_file(), "README.md": b"# saetui demo SAE (RANDOM weights)\n"})
    fetched = published(hub_dir)
    assert fetched is not None
    count = draw_images(images, per_class)
    _say(log, f"drew {count} labelled images into {images}")
    remove_database(db)
    options = IndexOptions(batch_size=16, device="cpu", embeddings=True)  # embeddings: steer and score use them
    index_images(FolderSource(str(images)), fetched, db, options, log=log)
    _say(log, "computing statistics")
    stats = StatsOptions(top_images=100, entropy_top=100)
    compute_stats(db, stats, cache=cache, sae_files=SaeFiles(fetched.checkpoint_path, fetched.model_dir), progress=None)
    return DemoWorkspace(root, db, images, cache, fetched, built=True)

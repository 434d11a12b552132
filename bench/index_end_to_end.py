"""End-to-end index throughput: JPEG files to a finished database through `saetui index`'s own engine.

A random-weight open_clip vision tower at a real shape (ViT-L-14 by default, nothing downloaded) and a random
CLIP-Scope-format TopK SAE (width x 65,536, k = 32) are written into a temporary workspace the engine loads as it
loads a fetched SAE; the source is a folder of N hard links to the 300 committed ImageNet sample photos (short
side ~230 px: full-size ImageNet photos cost more to decode and resize). The run is the real engine: decode pool,
batched forward and encode on the device, commit lanes, statistics off. The rate is timed from the run's start
(the engine's "starting run" line, once the model and the SAE are loaded) to the finished database. On a CUDA
device `nvidia-smi` is sampled every 100 ms meanwhile and the mean GPU utilisation is the busy share. Random
weights are not a trained CLIP: the figure is throughput, not fidelity.

    python bench/index_end_to_end.py --device cuda --precision bf16 --batch-size 256 --images 20000
    python bench/index_end_to_end.py --device cpu --model ViT-B-32 --layer 10 --images 300   # a CPU smoke run

Prints the headline last: `end_to_end_images_per_s: X`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from random_models import random_scope_sae  # noqa: E402

from saetui.device import resolve_devices  # noqa: E402
from saetui.hub import FetchedSae  # noqa: E402
from saetui.ingest.indexer import IndexOptions, index_images  # noqa: E402
from saetui.ingest.sources import open_source  # noqa: E402
from saetui.registry import SaeSpec  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "imagenet-sample"


def random_workspace(root: Path, model: str, layer: int) -> FetchedSae:
    """A model folder with a random open_clip vision tower and a random CLIP-Scope .pt, as a FetchedSae."""
    import open_clip
    from safetensors.torch import save_file

    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    config = open_clip.get_model_config(model)
    torch.manual_seed(0)
    visual = open_clip.create_model(model).visual
    save_file({f"visual.{k}": v.contiguous() for k, v in visual.state_dict().items()},
              model_dir / "open_clip_model.safetensors")  # fmt: skip
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": {}}))
    width = int(config["vision_cfg"]["width"])
    weights = random_scope_sae(d_in=width)
    checkpoint = root / "sae.pt"
    state = {"pre_b": weights.input_bias, "enc": weights.enc, "dec": weights.dec}
    torch.save({"model_state_dict": state, "k": 32, "d_in": width, "n_features": weights.n_features}, checkpoint)
    spec = SaeSpec(name=f"random-{model}-layer{layer}", repo_id="bench/random", model=f"hf-hub:bench/{model}",
                   layer=layer, file="sae.pt", d_in=width)  # fmt: skip
    return FetchedSae(
        spec=spec,
        checkpoint_path=checkpoint,
        checkpoint_file="sae.pt",
        checkpoint_tokens=None,
        sae_revision="random",
        model_dir=model_dir,
        model_config=model_dir / "open_clip_config.json",
        model_weights=model_dir / "open_clip_model.safetensors",
        model_revision="random",
        preprocessor_config=None,
    )


def linked_source(root: Path, n_images: int) -> Path:
    """A folder of n_images hard links (copies where links fail) to the sample photos, in class folders."""
    photos = sorted(SAMPLE.glob("*/*"))
    for number in range(n_images):
        photo = photos[number % len(photos)]
        folder = root / photo.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{number:08d}{photo.suffix}"
        try:
            os.link(photo, target)
        except OSError:
            shutil.copy(photo, target)
    return root


class StartClock(io.TextIOBase):
    """The engine's log (passed on to stderr), noting when the run starts: after the model and the SAE loaded."""

    def __init__(self) -> None:
        """No start seen yet."""
        self.started: float | None = None

    def write(self, text: str) -> int:
        """Pass text on; the first "starting run" line sets the start."""
        if self.started is None and "starting run" in text:
            self.started = time.perf_counter()
        return sys.stderr.write(text)


class GpuSampler:
    """Mean `nvidia-smi` GPU utilisation (percent, over the GPUs and the samples) while it runs, every 100 ms."""

    def __init__(self, indices: list[int]) -> None:
        """Start sampling the GPUs with these indices, if nvidia-smi exists."""
        self.samples: list[float] = []
        self._process = None
        if shutil.which("nvidia-smi"):
            self._process = subprocess.Popen(
                ["nvidia-smi", f"--id={','.join(map(str, indices))}", "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        """Collect samples until the process ends."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def stop(self) -> float | None:
        """Stop and return the mean utilisation, or None without nvidia-smi."""
        if self._process is None:
            return None
        self._process.terminate()
        self._process.wait()
        return sum(self.samples) / len(self.samples) if self.samples else None


def main() -> None:
    """Index the linked folder once and print the throughput last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-L-14")
    parser.add_argument("--layer", type=int, default=20)
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--writers", type=int, help="commit lanes (default: the engine's)")
    parser.add_argument("--workers", type=int, help="decode threads (default: the engine's)")
    parser.add_argument("--tmp", type=Path, help="workspace folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        fetched = random_workspace(root / "workspace", args.model, args.layer)
        source = open_source(str(linked_source(root / "images", args.images)))
        extra = {k: v for k, v in (("writers", args.writers), ("workers", args.workers)) if v}
        options = IndexOptions(batch_size=args.batch_size, device=args.device, precision=args.precision, **extra)
        devices = resolve_devices(args.device)
        gpus = [d.index or 0 for d in devices if d.type == "cuda"]
        sampler = GpuSampler(gpus) if gpus else None
        clock = StartClock()
        wall, cpu = time.perf_counter(), time.process_time()
        summary = index_images(source, fetched, root / "bench.duckdb", options, log=clock)
        ended = time.perf_counter()
        wall, cpu, run = ended - wall, time.process_time() - cpu, ended - (clock.started or wall)
        busy = sampler.stop() if sampler is not None else None
        size = (root / "bench.duckdb").stat().st_size
    cores = f"{os.cpu_count()} CPU cores"
    name = ", ".join(torch.cuda.get_device_name(d) if d.type == "cuda" else cores for d in devices)
    print(f"{args.model} layer {args.layer}, {args.precision}, batch {args.batch_size}, "
          f"{options.workers} decode threads, {options.writers} commit lanes, on {name}")  # fmt: skip
    print(f"{summary.indexed} images ({summary.pairs_stored:,} pairs) in {run:.1f} s after loading "
          f"({wall:.1f} s in all); database {size / 2**20:.0f} MiB")  # fmt: skip
    print(f"host CPU: {1000 * cpu / max(1, summary.indexed):.2f} core-ms per image (every thread of the process)")
    if busy is not None:
        print(f"gpu_busy_percent: {busy:.0f}")
    print(f"end_to_end_images_per_s: {summary.indexed / run:.0f}")


if __name__ == "__main__":
    main()

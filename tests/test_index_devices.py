"""`saetui index --device A,B`: one model replica per listed device, batches dealt round-robin and written in order,
so the database is the one a single device writes (two CPU replicas here; the same path serves cuda:0,1,...);
commit lanes and `--precision tf32` change nothing on the CPU either (TF32 is a CUDA matmul mode)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from harness.fakehub import FetchedCache
from harness.sample import SAMPLE
from harness.tables import rows
from saetui.commands.main import main
from saetui.device import resolve_devices
from saetui.errors import UsageError
from saetui.models.trunk import resolve_precision

TABLES = {
    "images": "SELECT image_id, item_key, label, content_hash, md5(thumbnail) FROM images ORDER BY image_id",
    "codes": "SELECT image_id, token, feature, value FROM activations ORDER BY ALL",
    "errors": "SELECT image_id, token, sse, total_ss FROM token_errors ORDER BY ALL",
}


def test_two_replicas_write_the_single_device_database(hub_in_process: FetchedCache, tmp_path: Path) -> None:
    """60 sample images in batches of 8 over two CPU replicas: the same rows, bit for bit, as one device; the same
    again with two commit lanes, and with tf32 (which the runs table records)."""
    source = tmp_path / "images"
    source.mkdir()
    for path in sorted(SAMPLE.glob("*/*"))[:60]:
        (source / path.parent.name).mkdir(exist_ok=True)
        shutil.copy(path, source / path.parent.name / path.name)
    one, two, tf32 = tmp_path / "one.duckdb", tmp_path / "two.duckdb", tmp_path / "tf32.duckdb"
    args = ("--batch-size", "8", "--tokens", "cls", "--no-stats", "--commit-every", "16")
    assert main(["index", str(source), "--db", str(one), "--device", "cpu", *args]) == 0
    assert main(["index", str(source), "--db", str(two), "--device", "cpu,cpu", "--writers", "2", *args]) == 0
    assert main(["index", str(source), "--db", str(tf32), "--device", "cpu", "--precision", "tf32", *args]) == 0
    for name, sql in TABLES.items():
        assert rows(two, sql) == rows(one, sql), name
        assert rows(tf32, sql) == rows(one, sql), name
    assert rows(two, "SELECT device FROM runs") == [("cpu,cpu",)]
    assert rows(tf32, "SELECT precision FROM runs") == [("tf32",)]
    assert len(rows(two, "SELECT * FROM images")) == 60


@pytest.mark.parametrize(("precision", "mode"), [("fp32", "ieee"), ("tf32", "tf32"), ("bf16", "ieee")])
def test_the_precision_sets_how_cuda_computes_float32(precision: str, mode: str) -> None:
    """tf32 turns TF32 on for CUDA matmuls and convolutions; fp32 and bf16 turn it off, the convolution included,
    which PyTorch's own default would leave on (so fp32 on a GPU is IEEE float32 throughout)."""
    resolve_precision(precision)
    assert torch.backends.cuda.matmul.fp32_precision == mode
    assert torch.backends.cudnn.conv.fp32_precision == mode
    resolve_precision("fp32")


def test_device_lists_parse_and_refuse_empty_entries() -> None:
    """Each entry is one replica; an empty entry is a usage error naming the list."""
    assert [str(d) for d in resolve_devices("cpu,cpu")] == ["cpu", "cpu"]
    with pytest.raises(UsageError, match="empty entry"):
        resolve_devices("cpu,")


def test_a_device_list_with_the_ray_engine_is_one_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Ray places its actors' models itself: a device list there is refused before anything loads."""
    assert main(["index", "nowhere", "--engine", "ray", "--device", "cpu,cpu"]) == 2
    assert "--engine ray places one model per actor itself" in capsys.readouterr().err

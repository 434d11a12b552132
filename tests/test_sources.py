"""Image sources: folders, list files, Parquet, datasets saved to disk, and one-line errors for bad ones."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from harness.badimages import GOOD_COLOUR, IGNORED_FILES, SAMPLE, copy_imagenet_sample, make_bad_input_folder
from saetui import imagenet
from saetui.errors import DataError, NotFoundError, UsageError
from saetui.ingest.decoding import SkippedImage, decode_rgb
from saetui.ingest.sources import FolderSource, ImageItem, ListFileSource, ParquetSource, open_source


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    """A small solid-colour PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def write_file(path: Path, data: bytes) -> Path:
    """Write data at path, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def summary(items: list[ImageItem]) -> list[tuple[str, str | None, int]]:
    """(key, label, source_row) of each item."""
    return [(item.key, item.label, item.source_row) for item in items]


# Folders.


def test_folder_is_recursive_sorted_and_labelled_by_parent(tmp_path: Path) -> None:
    for name in ("zebra/b.png", "zebra/a.PNG", "apple/deep/x.webp", "apple/c.jpeg", "top.bmp", "m/n.TIFF"):
        write_file(tmp_path / name, png_bytes((1, 2, 3)))
    write_file(tmp_path / "apple" / "notes.txt", b"not an image")
    write_file(tmp_path / "apple" / "._c.jpeg", b"macOS resource fork")
    write_file(tmp_path / ".cache" / "hidden.jpg", png_bytes((0, 0, 0)))
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource)
    assert summary(list(source.items())) == [
        ("apple/c.jpeg", "apple", 0),
        ("apple/deep/x.webp", "deep", 1),
        ("m/n.TIFF", "m", 2),
        ("top.bmp", None, 3),
        ("zebra/a.PNG", "zebra", 4),
        ("zebra/b.png", "zebra", 5),
    ]
    assert len(source) == 6
    first = next(source.items())
    assert first.path == str(tmp_path / "apple" / "c.jpeg") and first.read() == png_bytes((1, 2, 3))
    assert str(tmp_path) in source.describe()


def test_folder_order_is_deterministic_and_resumable(tmp_path: Path) -> None:
    for index in reversed(range(12)):
        write_file(tmp_path / f"class{index % 3}" / f"img{index:02d}.png", png_bytes((index, 0, 0)))
    once, again = list(open_source(str(tmp_path)).items()), list(open_source(str(tmp_path)).items())
    assert once == again
    assert [item.source_row for item in once] == list(range(12))
    tail = list(open_source(str(tmp_path)).items(start=7))
    assert tail == once[7:]
    assert list(open_source(str(tmp_path)).items(start=12)) == []


def test_imagenet_wnid_folders_get_class_names(tmp_path: Path) -> None:
    train = copy_imagenet_sample(tmp_path, wnids=3, split="train")
    val = copy_imagenet_sample(tmp_path, wnids=2, split="val")
    write_file(tmp_path / "extra" / "mine.png", png_bytes((5, 5, 5)))
    items = list(open_source(str(tmp_path)).items())
    assert len(items) == len(train) + len(val) + 1
    names = imagenet.wnid_to_name()
    for item in items:
        folder = Path(item.path).parent.name
        assert item.label == names.get(folder, folder)
    labels = {item.key.split("/")[1]: item.label for item in items if item.key.startswith("train/")}
    assert labels == {
        "n01484850": "great white shark",
        "n01494475": "hammerhead shark",
        "n01514668": "rooster",
    }


def test_imagenet_sample_folder_directly(tmp_path: Path) -> None:
    copy_imagenet_sample(tmp_path, wnids=5, split=None)
    items = list(open_source(str(tmp_path)).items())
    wnids = sorted(path.name for path in SAMPLE.iterdir())[:5]
    assert [item.label for item in items] == [imagenet.wnid_to_name()[wnid] for wnid in wnids]
    assert all(decode_rgb(item.read()).mode == "RGB" for item in items)


def test_imagenet_metadata() -> None:
    wnids, names = imagenet.wnids(), imagenet.class_names()
    assert len(wnids) == len(names) == 1000 == len(set(wnids))
    assert wnids[:2] == ["n01440764", "n01443537"] and names[:2] == ["tench", "goldfish"]
    assert wnids == sorted(wnids)  # ImageNet-1k class indices follow the sorted wnids
    assert {path.name for path in SAMPLE.iterdir()} <= set(wnids)
    assert imagenet.is_wnid("n15075141") and not imagenet.is_wnid("n99999999") and not imagenet.is_wnid("cats")
    assert imagenet.wnid_to_name()["n15075141"] == "toilet paper"


def test_labelling_a_folder_does_not_import_torch() -> None:
    code = (
        "import sys; from saetui.ingest.sources import open_source; "
        f"items = list(open_source({str(SAMPLE)!r}).items()); "
        "assert items[0].label == 'great white shark', items[0]; "
        "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules; print(len(items))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "300"


def test_bad_input_folder_yields_every_image_extension_entry(tmp_path: Path) -> None:
    expected = make_bad_input_folder(tmp_path)
    items = list(open_source(str(tmp_path)).items())
    assert {item.key for item in items} == set(expected)
    assert not any(item.key in IGNORED_FILES for item in items)
    by_key = {item.key: item for item in items}
    assert by_key["root_level.png"].label is None and by_key["bad/fifo.jpg"].label == "bad"
    for name in ("bad/broken_link.jpg", "bad/loop_a.jpg", "bad/fifo.jpg", "bad/zero_byte.jpg"):
        with pytest.raises(SkippedImage) as skipped:
            by_key[name].read()
        assert expected[name] is not None and expected[name] in skipped.value.reason


def test_folder_symlinks_are_followed_once_without_looping(tmp_path: Path) -> None:
    write_file(tmp_path / "real" / "a.png", png_bytes((9, 9, 9)))
    os.symlink(tmp_path / "real", tmp_path / "alias")
    os.symlink("..", tmp_path / "real" / "up")
    keys = [item.key for item in open_source(str(tmp_path)).items()]
    assert keys == ["alias/a.png"]


# List files.


def test_list_file_with_labels_comments_and_relative_paths(tmp_path: Path) -> None:
    write_file(tmp_path / "imgs" / "one.png", png_bytes((1, 1, 1)))
    write_file(tmp_path / "elsewhere" / "two.jpg", GOOD_COLOUR.read_bytes())
    listing = tmp_path / "lists" / "train.tsv"
    listing.parent.mkdir()
    listing.write_text(
        "# path<TAB>label\n"
        "\n"
        "../imgs/one.png\tcat\n"
        f"{tmp_path / 'elsewhere' / 'two.jpg'}\tsea creature \n"
        "../imgs/one.png\tduplicate\n"
        "../imgs/missing.png\n"
    )
    source = open_source(str(listing))
    assert isinstance(source, ListFileSource)
    items = list(source.items())
    assert summary(items) == [
        (str(tmp_path / "imgs" / "one.png"), "cat", 0),
        (str(tmp_path / "elsewhere" / "two.jpg"), "sea creature", 1),
        (str(tmp_path / "imgs" / "missing.png"), None, 2),
    ]
    assert len(source) == 3 and list(source.items(start=1)) == items[1:]
    assert items[1].read() == GOOD_COLOUR.read_bytes()
    with pytest.raises(SkippedImage, match="missing file"):
        items[2].read()


def test_list_file_without_labels(tmp_path: Path) -> None:
    paths = [write_file(tmp_path / f"{name}.png", png_bytes((3, 3, 3))) for name in ("b", "a")]
    listing = tmp_path / "paths.txt"
    listing.write_text("\n".join(path.name for path in paths) + "\n")
    items = list(open_source(str(listing)).items())
    assert [(item.path, item.label) for item in items] == [(str(paths[0]), None), (str(paths[1]), None)]


# Parquet.


def test_parquet_with_bytes_and_string_labels(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    table = pa.table({"img": [png_bytes(c) for c in colours], "class": ["red", "green", None]})
    pq.write_table(table, tmp_path / "data.parquet")
    source = open_source(str(tmp_path / "data.parquet"))
    assert isinstance(source, ParquetSource)
    items = list(source.items())
    assert summary(items) == [
        ("data.parquet:0", "red", 0),
        ("data.parquet:1", "green", 1),
        ("data.parquet:2", None, 2),
    ]
    assert [decode_rgb(item.read()).getpixel((0, 0)) for item in items] == colours
    assert items[0].path == f"{tmp_path / 'data.parquet'}#0"
    copy = pickle.loads(pickle.dumps(items[0]))  # items travel to decoding worker processes
    assert copy == items[0] and copy.read() == items[0].read()
    assert "image column 'img'" in source.describe() and "label column 'class'" in source.describe()


def test_parquet_with_paths_and_integer_labels(tmp_path: Path) -> None:
    write_file(tmp_path / "pics" / "x.png", png_bytes((4, 4, 4)))
    table = pa.table({"label": [3, 0, 1], "path": ["pics/x.png", str(GOOD_COLOUR), ""], "other": [1.0, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "paths.parquet")
    items = list(open_source(str(tmp_path / "paths.parquet")).items())
    assert [(item.path, item.label) for item in items[:2]] == [
        (str(tmp_path / "pics" / "x.png"), "3"),
        (str(GOOD_COLOUR), "0"),
    ]
    assert items[1].read() == GOOD_COLOUR.read_bytes()
    with pytest.raises(SkippedImage, match="no image data in this row"):
        items[2].read()


def hf_style_table(colours: list[tuple[int, int, int]], labels: list[int], names: list[str]) -> pa.Table:
    """A table laid out as HF datasets writes an Image + ClassLabel dataset, schema metadata included."""
    image = pa.array(
        [{"bytes": png_bytes(c), "path": f"img{i}.png"} for i, c in enumerate(colours)],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    features = {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.table({"image": image, "label": pa.array(labels, pa.int64())}).replace_schema_metadata(metadata)


def test_parquet_hf_struct_column_with_class_label_names(tmp_path: Path) -> None:
    pq.write_table(hf_style_table([(9, 8, 7), (1, 2, 3)], [1, 0], ["cat", "dog"]), tmp_path / "hf.parquet")
    items = list(open_source(str(tmp_path / "hf.parquet")).items())
    assert [(item.path, item.label) for item in items] == [("img0.png", "dog"), ("img1.png", "cat")]
    assert decode_rgb(items[1].read()).getpixel((0, 0)) == (1, 2, 3)


def test_parquet_struct_with_path_only_reads_the_file(tmp_path: Path) -> None:
    image = pa.array(
        [{"bytes": None, "path": str(GOOD_COLOUR)}],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    pq.write_table(pa.table({"image": image}), tmp_path / "p.parquet")
    (item,) = open_source(str(tmp_path / "p.parquet")).items()
    assert item.label is None and item.read() == GOOD_COLOUR.read_bytes()


def test_parquet_folder_picks_the_split_and_resumes_across_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for shard in range(2):
        colours = [(shard, row, 0) for row in range(5)]
        table = hf_style_table(colours, [row % 2 for row in range(5)], ["even", "odd"])
        pq.write_table(table, data / f"train-0000{shard}-of-00002.parquet", row_group_size=2)
    pq.write_table(hf_style_table([(7, 7, 7)], [0], ["even", "odd"]), data / "validation-00000-of-00001.parquet")
    source = open_source(str(tmp_path))
    assert isinstance(source, ParquetSource) and len(source) == 10
    items = list(source.items())
    assert [item.source_row for item in items] == list(range(10))
    assert items[6].key == "data/train-00001-of-00002.parquet:1" and items[6].label == "odd"
    assert [decode_rgb(item.read()).getpixel((0, 0)) for item in items[4:7]] == [
        (0, 4, 0),
        (1, 0, 0),
        (1, 1, 0),
    ]
    assert list(source.items(start=3)) == items[3:] and list(source.items(start=7)) == items[7:]
    validation = list(open_source(str(tmp_path), split="validation").items())
    assert [decode_rgb(item.read()).getpixel((0, 0)) for item in validation] == [(7, 7, 7)]
    with pytest.raises(NotFoundError, match=r"no 'test' split .*splits found: train, validation"):
        open_source(str(tmp_path), split="test")


def test_parquet_column_options(tmp_path: Path) -> None:
    table = pa.table({"picture": [png_bytes((1, 1, 1))], "target": ["x"], "label": ["ignored"]})
    pq.write_table(table, tmp_path / "t.parquet")
    (item,) = open_source(str(tmp_path / "t.parquet"), image_column="picture", label_column="target").items()
    assert item.label == "x" and decode_rgb(item.read()).size == (8, 6)
    (by_type,) = open_source(str(tmp_path / "t.parquet")).items()
    assert by_type.label == "ignored" and by_type.data == png_bytes((1, 1, 1))
    with pytest.raises(UsageError, match=r"no column 'pixels' .*columns: picture, target, label"):
        open_source(str(tmp_path / "t.parquet"), image_column="pixels")
    with pytest.raises(UsageError, match="no column 'y'"):
        open_source(str(tmp_path / "t.parquet"), label_column="y")
    pq.write_table(pa.table({"a": [1], "b": [2.0]}), tmp_path / "numbers.parquet")
    with pytest.raises(DataError, match="no image column found"):
        open_source(str(tmp_path / "numbers.parquet"))


# Errors for unusable sources.


def test_missing_source_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="source not found"):
        open_source(str(tmp_path / "nowhere"))


def test_empty_sources_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no images found in .*empty \(looked for \.jpg, \.jpeg, \.png"):
        open_source(str(tmp_path / "empty"))
    write_file(tmp_path / "docs" / "readme.md", b"# nothing here")
    with pytest.raises(DataError, match="no images found"):
        open_source(str(tmp_path / "docs"))
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(DataError, match="no images found"):
        open_source(str(tmp_path / "empty.txt"))
    pq.write_table(pa.table({"image": pa.array([], pa.binary())}), tmp_path / "empty.parquet")
    with pytest.raises(DataError, match="no rows"):
        open_source(str(tmp_path / "empty.parquet"))


def test_unsupported_files_are_usage_errors(tmp_path: Path) -> None:
    single = write_file(tmp_path / "one.jpg", GOOD_COLOUR.read_bytes())
    with pytest.raises(UsageError, match="single image"):
        open_source(str(single))
    with pytest.raises(UsageError, match="unsupported source file type '.csv'"):
        open_source(str(write_file(tmp_path / "x.csv", b"a,b\n")))


def test_errors_are_one_line(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "nowhere"), str(tmp_path)):
        with pytest.raises((NotFoundError, DataError)) as error:
            open_source(spec)
        assert "\n" not in error.value.one_line() and error.value.hint


# Hugging Face datasets.


def test_hf_source_without_datasets_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(UsageError) as error:
        open_source("hf:ylecun/mnist")
    assert error.value.hint == "pip install 'saetui[datasets]'"


def test_dataset_saved_to_disk(tmp_path: Path) -> None:
    """A dataset written by datasets.save_to_disk, read through datasets (optional extra saetui[datasets])."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    rows = {
        "image": [{"bytes": png_bytes((i, 0, 0)), "path": f"{i}.png"} for i in range(3)],
        "label": [1, 0, 1],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    dataset.save_to_disk(str(tmp_path / "single"))
    source = open_source(str(tmp_path / "single"))
    items = list(source.items())
    assert summary(items) == [("train:0", "dog", 0), ("train:1", "cat", 1), ("train:2", "dog", 2)]
    assert [decode_rgb(item.read()).getpixel((0, 0)) for item in items] == [(0, 0, 0), (1, 0, 0), (2, 0, 0)]
    assert len(source) == 3 and list(source.items(start=2)) == items[2:]
    datasets.DatasetDict({"train": dataset, "test": dataset.select([2])}).save_to_disk(str(tmp_path / "dict"))
    (test_item,) = open_source(str(tmp_path / "dict"), split="test").items()
    assert test_item.key == "test:0" and test_item.label == "dog"
    with pytest.raises(NotFoundError, match=r"no 'validation' split .*splits found: train, test"):
        open_source(str(tmp_path / "dict"), split="validation")


def test_hf_name_loads_through_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hf:NAME goes through datasets.load_dataset; a local folder stands in for a hub name (no network)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    table = hf_style_table([(5, 6, 7), (8, 9, 10)], [0, 1], ["cat", "dog"])
    pq.write_table(table, tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    source = open_source(f"hf:{tmp_path / 'repo'}")
    items = list(source.items())
    assert summary(items) == [("train:0", "cat", 0), ("train:1", "dog", 1)]
    assert decode_rgb(items[1].read()).getpixel((0, 0)) == (8, 9, 10)
    with pytest.raises(NotFoundError, match="Unknown split"):
        open_source(f"hf:{tmp_path / 'repo'}", split="test")

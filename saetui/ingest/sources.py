"""Image sources for ``saetui index SOURCE``: folders, list files, Parquet, HF datasets -> ImageItems.

Every source yields its items in a deterministic order (sorted paths, file order, row order), numbering them
with ``source_row`` from 0, so a resumed run and image ids are stable across runs over unchanged input.
``key`` is unique within the source and stable across runs; ``path`` is what the ``images`` table shows.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from saetui import imagenet
from saetui.errors import DataError, NetworkError, NotFoundError, UsageError
from saetui.ingest.decoding import SkippedImage, read_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
LIST_EXTENSIONS = (".txt", ".lst", ".tsv")
IMAGE_COLUMN_NAMES = ("image", "img", "path", "file")
LABEL_COLUMN_NAMES = ("label", "labels", "class")
SPLIT_NAMES = ("train", "validation", "valid", "val", "test")
SOURCE_HINT = "give an image folder, a list file (.txt/.lst/.tsv), a Parquet file or folder, or hf:NAME"
DATASETS_HINT = "pip install 'saetui[datasets]'"
_BATCH_ROWS = 64


@dataclass(frozen=True)
class ImageItem:
    """One image of a source: where it is, its label, its position, and (for table sources) its bytes."""

    key: str
    path: str
    label: str | None
    source_row: int
    data: bytes | None = field(default=None, repr=False, compare=False)
    problem: str | None = field(default=None, compare=False)

    def read(self) -> bytes:
        """The encoded image bytes; raises SkippedImage when the item cannot provide any."""
        if self.problem is not None:
            raise SkippedImage(self.problem)
        if self.data is None:
            return read_bytes(self.path)
        if not self.data:
            raise SkippedImage("zero-byte image data")
        return self.data


class ImageSource(ABC):
    """A collection of images in a fixed order."""

    spec: str

    @abstractmethod
    def describe(self) -> str:
        """One line saying what is read, for logs and the ``runs`` table."""

    @abstractmethod
    def items(self, start: int = 0) -> Iterator[ImageItem]:
        """The items with ``source_row >= start``, in source order."""

    @abstractmethod
    def keys(self) -> Iterator[str]:
        """Every item's key in source order, read without touching any image data."""

    @abstractmethod
    def __len__(self) -> int:
        """The number of items ``items()`` yields."""


def open_source(
    spec: str,
    *,
    split: str = "train",
    image_column: str | None = None,
    label_column: str | None = None,
) -> ImageSource:
    """Open SOURCE as given on the command line; raise a one-line NotFound/Data/UsageError if unusable."""
    if spec.startswith("hf:"):
        return HfDatasetSource(spec, split=split, image_column=image_column, label_column=label_column)
    path = Path(spec).expanduser()
    if not path.exists():
        raise NotFoundError(f"source not found: {spec}", SOURCE_HINT)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return ParquetSource(spec, [path], image_column=image_column, label_column=label_column)
        if suffix in LIST_EXTENSIONS:
            return ListFileSource(spec)
        if suffix in IMAGE_EXTENSIONS:
            raise UsageError(f"source is a single image: {spec}", "give its folder, or a list file of paths")
        raise UsageError(f"unsupported source file type '{path.suffix or path.name}': {spec}", SOURCE_HINT)
    if not path.is_dir():
        raise UsageError(f"source is neither a file nor a folder: {spec}", SOURCE_HINT)
    if (path / "dataset_dict.json").is_file() or (
        (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    ):
        return HfDatasetSource(spec, split=split, image_column=image_column, label_column=label_column)
    try:
        os.scandir(path).close()
    except OSError as exc:
        raise NotFoundError(f"cannot read folder {spec}: {exc.strerror}", "check its permissions") from None
    first_image = next(_walk_images(path.absolute()), None)
    if first_image is None:
        parquet_files = sorted(path.rglob("*.parquet"))
        if parquet_files:
            chosen = _files_of_split(spec, path, parquet_files, split)
            return ParquetSource(spec, chosen, image_column=image_column, label_column=label_column)
        raise DataError(
            f"no images found in {spec} (looked for {', '.join(IMAGE_EXTENSIONS)} and .parquet, recursively)",
            SOURCE_HINT,
        )
    return FolderSource(spec)


class FolderSource(ImageSource):
    """Image files under a folder, recursively, in sorted path order; label = name of the containing folder.

    Files directly in the root have no label. Folders named by an ImageNet-1k wnid (n01440764, ...) anywhere
    in the tree, e.g. ImageNet's ``train/`` and ``val/`` layouts, are labelled with open_clip's class name
    ("tench"). Symlinks to folders are followed once each (a loop is not re-entered); broken symlinks, symlink
    loops and other unreadable entries with an image extension are still yielded so they are recorded as
    skipped. Names starting with "." (hidden files and folders such as macOS "._x.jpg" resource forks) and
    other extensions are ignored.
    """

    def __init__(self, spec: str) -> None:
        """Open the folder spec (which must exist)."""
        self.spec = spec
        self.root = Path(spec).expanduser().absolute()
        self._count: int | None = None

    def describe(self) -> str:
        """One line naming the folder and the labelling rule."""
        return f"folder {self.root} (recursive; label = containing folder, ImageNet wnids -> class names)"

    def items(self, start: int = 0) -> Iterator[ImageItem]:
        """The image files from position start on."""
        names = imagenet.wnid_to_name()
        for row, (relative, problem) in enumerate(islice(_walk_images(self.root), start, None), start):
            parts = relative.split("/")
            folder = parts[-2] if len(parts) > 1 else None
            label = names.get(folder, folder) if folder is not None else None
            path = str(self.root / relative)
            yield ImageItem(key=relative, path=path, label=label, source_row=row, problem=problem)

    def keys(self) -> Iterator[str]:
        """The image files' paths relative to the folder."""
        return (relative for relative, _ in _walk_images(self.root))

    def __len__(self) -> int:
        """The number of image files (one directory walk, then cached)."""
        if self._count is None:
            self._count = sum(1 for _ in _walk_images(self.root))
        return self._count


def _walk_images(root: Path) -> Iterator[tuple[str, str | None]]:
    """Relative POSIX paths of image-extension entries under root, sorted, each with a problem or None."""
    seen: set[tuple[int, int]] = set()
    try:
        info = root.stat()
        seen.add((info.st_dev, info.st_ino))
    except OSError:
        return
    yield from _walk_folder(root, "", seen)


def _walk_folder(folder: Path, prefix: str, seen: set[tuple[int, int]]) -> Iterator[tuple[str, str | None]]:
    """Depth-first walk of one folder, entries sorted by name."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError as exc:
        if prefix:
            reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or str(exc))
            yield prefix.rstrip("/"), f"unreadable folder: {reason}"
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        relative = prefix + entry.name
        if _is_folder(entry):
            try:
                info = entry.stat()
            except OSError:
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in seen:
                continue
            seen.add(identity)
            yield from _walk_folder(Path(entry.path), relative + "/", seen)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield relative, None


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Whether a directory entry is a folder (following symlinks); loops and dangling links are not."""
    try:
        return entry.is_dir()
    except OSError:
        return False


class ListFileSource(ImageSource):
    """A text file of image paths, one per line, with an optional TAB-separated label.

    Relative paths are resolved against the list file's folder; blank lines and lines starting with "#" are
    ignored; a path listed twice is indexed once (its first line wins).
    """

    def __init__(self, spec: str) -> None:
        """Read and parse the list file."""
        self.spec = spec
        self.list_path = Path(spec).expanduser().absolute()
        try:
            text = self.list_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError(f"list file is not UTF-8 text: {spec}", "write one image path per line") from None
        except OSError as exc:
            raise NotFoundError(f"cannot read list file {spec}: {exc.strerror}", SOURCE_HINT) from None
        entries: dict[str, str | None] = {}
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            raw_path, _, raw_label = line.partition("\t")
            path = os.path.normpath(self.list_path.parent / Path(raw_path.strip()).expanduser())
            label = raw_label.strip() or None
            entries.setdefault(path, label)
        if not entries:
            raise DataError(f"no images found in {spec} (the list file names no paths)", "one image path per line")
        self._entries = list(entries.items())

    def describe(self) -> str:
        """One line naming the list file."""
        return f"list file {self.list_path} ({len(self._entries)} paths)"

    def items(self, start: int = 0) -> Iterator[ImageItem]:
        """The listed paths from position start on."""
        for row in range(start, len(self._entries)):
            path, label = self._entries[row]
            yield ImageItem(key=path, path=path, label=label, source_row=row)

    def keys(self) -> Iterator[str]:
        """The listed paths (resolved)."""
        return (path for path, _ in self._entries)

    def __len__(self) -> int:
        """The number of distinct listed paths."""
        return len(self._entries)


def _files_of_split(spec: str, root: Path, files: list[Path], split: str) -> list[Path]:
    """The Parquet files of one split when file or folder names carry split names, else all of them."""
    tagged = {file: _split_of(file.relative_to(root)) for file in files}
    splits = sorted({name for name in tagged.values() if name is not None})
    if not splits:
        return files
    chosen = [file for file, name in tagged.items() if name == split]
    if not chosen:
        raise NotFoundError(
            f"no '{split}' split in {spec} (splits found: {', '.join(splits)})",
            f"use --split {splits[0]}",
        )
    return chosen


def _split_of(relative: Path) -> str | None:
    """The split a Parquet file belongs to from its folders ("train/...") or name ("train-00000-of-00004")."""
    for part in relative.parts[:-1]:
        if part.lower() in SPLIT_NAMES:
            return part.lower()
    stem = relative.name.lower()
    for name in SPLIT_NAMES:
        if stem.startswith(name) and stem[len(name) : len(name) + 1] in ("-", "_", "."):
            return name
    return None


@dataclass(frozen=True)
class _Columns:
    """The image and label columns chosen for a table source, with the label names when known."""

    image: str
    label: str | None
    label_names: Sequence[str] | None


class ParquetSource(ImageSource):
    """Rows of one or more Parquet files (sorted), read batch by batch with pyarrow.

    The image column holds encoded bytes, paths (resolved against the Parquet file's folder), or the
    ``{"bytes", "path"}`` struct Hugging Face datasets writes. Integer labels become the ClassLabel names
    stored in the file's Hugging Face schema metadata when present, else their decimal text.
    """

    def __init__(self, spec: str, files: list[Path], *, image_column: str | None, label_column: str | None) -> None:
        """Open the files and choose the columns from the first file's schema."""
        import pyarrow.parquet as pq

        self.spec = spec
        self.files = [file.absolute() for file in files]
        self._base = Path(spec).expanduser().absolute()
        try:
            metadata = [pq.read_metadata(file) for file in self.files]
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable Parquet file in {spec}: {exc}", "check the file is complete") from None
        schema = metadata[0].schema.to_arrow_schema()
        self.columns = _choose_columns(
            spec, _schema_kinds(schema), _class_label_names(schema.metadata), image_column, label_column
        )
        self._rows = [meta.num_rows for meta in metadata]
        if sum(self._rows) == 0:
            raise DataError(f"no images found in {spec} (the Parquet data has no rows)", SOURCE_HINT)

    def describe(self) -> str:
        """One line naming the files and columns."""
        label = f", label column '{self.columns.label}'" if self.columns.label else ", no labels"
        return f"parquet {self._base} ({len(self.files)} files, image column '{self.columns.image}'{label})"

    def items(self, start: int = 0) -> Iterator[ImageItem]:
        """The rows from position start on, skipping whole row groups before it without reading them."""
        import pyarrow.parquet as pq

        offset = 0
        for file, rows in zip(self.files, self._rows, strict=True):
            if offset + rows <= start:
                offset += rows
                continue
            with pq.ParquetFile(file) as parquet:
                yield from self._file_items(parquet, file, offset, max(start - offset, 0))
            offset += rows

    def _file_items(self, parquet: Any, file: Path, offset: int, start: int) -> Iterator[ImageItem]:
        """The items of one file from its row start on; offset is the source row of its first row."""
        schema = parquet.schema_arrow
        wanted = [name for name in (self.columns.image, self.columns.label) if name is not None]
        missing = [name for name in wanted if name not in schema.names]
        if missing:
            raise DataError(
                f"{file} has no column '{missing[0]}' (columns: {', '.join(schema.names)})",
                "give Parquet files with the same columns",
            )
        names = _class_label_names(schema.metadata).get(self.columns.label or "") or self.columns.label_names
        tag = self._tag(file)
        groups, row = _row_groups_from(parquet.metadata, start)
        if not groups:
            return
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, row_groups=groups, columns=wanted):
            images = batch.column(self.columns.image).to_pylist()
            labels = batch.column(self.columns.label).to_pylist() if self.columns.label else [None] * len(images)
            for image_value, label_value in zip(images, labels, strict=True):
                if row >= start:
                    label = _label_text(label_value, names)
                    yield _table_item(f"{tag}:{row}", f"{file}#{row}", file.parent, image_value, label, offset + row)
                row += 1

    def _tag(self, file: Path) -> str:
        """How item keys name one of the files: its path below the source folder."""
        return file.relative_to(self._base).as_posix() if file != self._base else file.name

    def keys(self) -> Iterator[str]:
        """file:row for every row, from the Parquet footers."""
        for file, rows in zip(self.files, self._rows, strict=True):
            tag = self._tag(file)
            yield from (f"{tag}:{row}" for row in range(rows))

    def __len__(self) -> int:
        """The total row count from the Parquet footers."""
        return sum(self._rows)


def _row_groups_from(metadata: Any, start: int) -> tuple[list[int], int]:
    """The row groups holding rows >= start, and the file row their first row has."""
    first_row = 0
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if first_row + rows > start:
            return list(range(group, metadata.num_row_groups)), first_row
        first_row += rows
    return [], first_row


def _schema_kinds(schema: Any) -> dict[str, str]:
    """Each column of an Arrow schema classified as "bytes", "path", "struct", "integer" or "other"."""
    import pyarrow as pa

    kinds: dict[str, str] = {}
    for column in schema:
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            kinds[column.name] = "bytes"
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            kinds[column.name] = "path"
        elif pa.types.is_struct(kind) and {"bytes", "path"} & {kind.field(i).name for i in range(kind.num_fields)}:
            kinds[column.name] = "struct"
        elif pa.types.is_integer(kind):
            kinds[column.name] = "integer"
        else:
            kinds[column.name] = "other"
    return kinds


def _class_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]]:
    """ClassLabel names per column from the Hugging Face datasets schema metadata, if any."""
    if not metadata or b"huggingface" not in metadata:
        return {}
    try:
        features = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return {
        name: list(feature["names"])
        for name, feature in features.items()
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")
    }


def _choose_columns(
    spec: str,
    kinds: dict[str, str],
    label_names: dict[str, list[str]],
    image_column: str | None,
    label_column: str | None,
) -> _Columns:
    """Pick the image and label columns: the options if given, else by name, else by type."""
    available = ", ".join(kinds)
    if image_column is not None and image_column not in kinds:
        raise UsageError(f"no column '{image_column}' in {spec} (columns: {available})", "fix --image-column")
    if label_column is not None and label_column not in kinds:
        raise UsageError(f"no column '{label_column}' in {spec} (columns: {available})", "fix --label-column")
    image = image_column or _by_name(kinds, IMAGE_COLUMN_NAMES) or _by_kind(kinds, ("struct", "bytes"))
    if image is None:
        raise DataError(f"no image column found in {spec} (columns: {available})", "name it with --image-column")
    if kinds[image] not in ("bytes", "path", "struct"):
        raise DataError(
            f"column '{image}' in {spec} holds neither image bytes nor paths",
            "name the image column with --image-column",
        )
    label = label_column or _by_name(kinds, LABEL_COLUMN_NAMES, exclude=image) or next(iter(label_names), None)
    return _Columns(image=image, label=label, label_names=label_names.get(label) if label else None)


def _by_name(kinds: dict[str, str], names: Iterable[str], exclude: str | None = None) -> str | None:
    """The first column whose lower-cased name is in names (in the order of names)."""
    lowered = {column.lower(): column for column in kinds if column != exclude}
    return next((lowered[name] for name in names if name in lowered), None)


def _by_kind(kinds: dict[str, str], wanted: Iterable[str]) -> str | None:
    """The first column of the first wanted kind."""
    return next((column for kind in wanted for column, found in kinds.items() if found == kind), None)


def _table_item(key: str, fallback_path: str, base: Path, value: Any, label: str | None, row: int) -> ImageItem:
    """An ImageItem from one image cell: bytes, a path, or a {"bytes", "path"} struct."""
    if isinstance(value, dict):
        data, given_path = value.get("bytes"), value.get("path")
        if data:
            return ImageItem(key, given_path or fallback_path, label, row, data=bytes(data))
        value = given_path
    if isinstance(value, bytes | bytearray):
        return ImageItem(key, fallback_path, label, row, data=bytes(value))
    if isinstance(value, str) and value:
        path = os.path.normpath(base / Path(value).expanduser())
        return ImageItem(key, path, label, row)
    return ImageItem(key, fallback_path, label, row, problem="no image data in this row (empty cell)")


def _label_text(value: Any, names: Sequence[str] | None) -> str | None:
    """A label cell as text: ClassLabel ids mapped to names, lists joined with ", ", None kept."""
    if value is None:
        return None
    if isinstance(value, list):
        texts = [_label_text(item, names) for item in value]
        return ", ".join(text for text in texts if text is not None) or None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and names is not None and 0 <= value < len(names):
        return names[value]
    return str(value)


class HfDatasetSource(ImageSource):
    """A Hugging Face dataset through the ``datasets`` library: ``hf:NAME[:CONFIG]`` or a save_to_disk folder.

    ``hf:`` datasets are downloaded and cached by ``datasets`` itself (its usual cache, so
    ``HF_DATASETS_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` apply). Image columns
    are read undecoded (``Image(decode=False)``) so saetui decodes the original bytes itself; ClassLabel ids
    become their names.
    """

    def __init__(self, spec: str, *, split: str, image_column: str | None, label_column: str | None) -> None:
        """Load the dataset split and choose the columns."""
        try:
            import datasets
        except ImportError:
            raise UsageError(f"reading {spec} needs the datasets library", DATASETS_HINT) from None
        self.spec = spec
        self.split = split
        dataset = _load_hf_split(datasets, spec, split)
        features = dataset.features
        kinds = {name: _feature_kind(datasets, feature) for name, feature in features.items()}
        label_names = {
            name: list(feature.names) for name, feature in features.items() if isinstance(feature, datasets.ClassLabel)
        }
        self.columns = _choose_columns(spec, kinds, label_names, image_column, label_column)
        if isinstance(features[self.columns.image], datasets.Image):
            dataset = dataset.cast_column(self.columns.image, datasets.Image(decode=False))
        wanted = [name for name in (self.columns.image, self.columns.label) if name is not None]
        self._dataset = dataset.select_columns(wanted).with_format(None)
        self._base = Path(spec).expanduser().absolute() if not spec.startswith("hf:") else Path.cwd()
        if len(self._dataset) == 0:
            raise DataError(f"no images found in {spec} (split '{split}' is empty)", SOURCE_HINT)

    def describe(self) -> str:
        """One line naming the dataset, split and columns."""
        label = f", label column '{self.columns.label}'" if self.columns.label else ", no labels"
        return f"dataset {self.spec} split '{self.split}' (image column '{self.columns.image}'{label})"

    def items(self, start: int = 0) -> Iterator[ImageItem]:
        """The rows from position start on."""
        total = len(self._dataset)
        if start >= total:
            return
        rows = self._dataset.select(range(start, total)) if start else self._dataset
        row = start
        for batch in rows.iter(batch_size=_BATCH_ROWS):
            images = batch[self.columns.image]
            labels = batch[self.columns.label] if self.columns.label else [None] * len(images)
            for image_value, label_value in zip(images, labels, strict=True):
                key = self._key(row)
                yield _table_item(
                    key,
                    f"{self.spec}#{key}",
                    self._base,
                    image_value,
                    _label_text(label_value, self.columns.label_names),
                    row,
                )
                row += 1

    def _key(self, row: int) -> str:
        """split:row, the key of one row."""
        return f"{self.split}:{row}"

    def keys(self) -> Iterator[str]:
        """split:row for every row."""
        return (self._key(row) for row in range(len(self._dataset)))

    def __len__(self) -> int:
        """The number of rows in the split."""
        return len(self._dataset)


def _load_hf_split(datasets: Any, spec: str, split: str) -> Any:
    """The Dataset of one split, from the hub (hf:NAME[:CONFIG]) or from a save_to_disk folder."""
    try:
        if spec.startswith("hf:"):
            name, _, config = spec[3:].partition(":")
            if not name:
                raise UsageError("hf: needs a dataset name, e.g. hf:ylecun/mnist", SOURCE_HINT)
            return datasets.load_dataset(name, config or None, split=split)
        loaded = datasets.load_from_disk(str(Path(spec).expanduser()))
    except datasets.exceptions.DatasetNotFoundError as exc:
        raise NotFoundError(f"dataset not found: {spec} ({_first_line(exc)})", "check the name, or HF_TOKEN") from None
    except FileNotFoundError as exc:
        raise NotFoundError(f"dataset files not found for {spec}: {_first_line(exc)}", SOURCE_HINT) from None
    except ConnectionError as exc:
        raise NetworkError(
            f"could not reach the hub for {spec}: {_first_line(exc)}",
            "check the network, or unset HF_HUB_OFFLINE",
        ) from None
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise NotFoundError(f"{spec}: {_first_line(exc)}", "choose one with --split") from None
        raise DataError(f"cannot load {spec}: {_first_line(exc)}", SOURCE_HINT) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise NotFoundError(
                f"no '{split}' split in {spec} (splits found: {', '.join(loaded)})",
                f"use --split {next(iter(loaded), split)}",
            )
        return loaded[split]
    return loaded


def _feature_kind(datasets: Any, feature: Any) -> str:
    """A datasets feature classified like _schema_kinds classifies Arrow columns."""
    if isinstance(feature, datasets.Image):
        return "struct"
    if isinstance(feature, datasets.ClassLabel):
        return "integer"
    if isinstance(feature, datasets.Value):
        if feature.dtype in ("binary", "large_binary"):
            return "bytes"
        if feature.dtype in ("string", "large_string"):
            return "path"
        if feature.dtype.startswith(("int", "uint")):
            return "integer"
    return "other"


def _first_line(exc: BaseException) -> str:
    """The first line of an exception message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

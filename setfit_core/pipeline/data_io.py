"""Reading one data split from a local path or an ``s3://`` URI, and hashing its content.

Supported: Parquet (``.parquet``, ``.pq``), CSV (``.csv``), JSON Lines (``.jsonl``, ``.ndjson``, or
``.json`` holding lines or one array of records), and a directory written by
``datasets.Dataset.save_to_disk``. Validation is the library's own (`setfit_core.data.load_labeled`),
so a pipeline user sees exactly the errors a `Trainer` user sees.

The content hash covers the normalised ``(text, label)`` rows in order, not the file bytes: the same
data as CSV or Parquet hashes the same, and an extra column or a re-encoded file does not invalidate
any stage.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import fsspec

from setfit_core.artifacts.s3 import explained, is_explained
from setfit_core.data import LabeledTexts, load_labeled

SUPPORTED_FORMATS = (
    "Parquet (.parquet, .pq), CSV (.csv), JSON Lines (.jsonl, .ndjson, .json) "
    "or a directory saved with datasets.Dataset.save_to_disk"
)
_SUFFIX_FORMAT = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
}
# Split names that say nothing about the dataset; the parent directory names it instead.
_GENERIC_STEMS = {"train", "test", "eval", "validation", "valid", "dev", "data", "dataset"}


@dataclass(frozen=True)
class Table:
    """A file's columns (the first of any repeated name) and its column names in order, repeats included."""

    columns: dict[str, list]
    names: list[str]


@dataclass(frozen=True)
class LoadedSplit:
    """A validated split and where it came from."""

    name: str
    uri: str
    data: LabeledTexts
    content_hash: str


def url_to_fs(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """Filesystem and path for a local path or URI; S3 options as in `ArtifactStore`."""
    options = dict(storage_options or {})
    if str(uri).startswith("s3://"):
        # Fresh clients: a cached one could still point at an old AWS_ENDPOINT_URL.
        options.setdefault("skip_instance_cache", True)
        options.setdefault("use_listings_cache", False)
    return fsspec.core.url_to_fs(str(uri), **options)


def read_columns(uri: str, name: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, list]:
    """All columns of the table at ``uri`` as lists; clear errors for missing or unreadable data."""
    fs, path, info = _locate(uri, name, storage_options)
    return _read(fs, path, info, uri, name, storage_options).columns


def _locate(uri: str, name: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str, dict[str, Any]]:
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"{name} must be a path or URI to {SUPPORTED_FORMATS}; got {uri!r}")
    fs, path = url_to_fs(uri, storage_options)
    try:
        with explained(f"read {name} {uri}", uri):
            info = fs.info(path)
    except FileNotFoundError as exc:
        if is_explained(exc):  # the bucket, not the file, is missing
            raise
        raise FileNotFoundError(
            f"{name} {uri!r} does not exist; pass a path or URI to {SUPPORTED_FORMATS}"
        ) from None
    except PermissionError as exc:
        if is_explained(exc):
            raise
        raise PermissionError(f"{name} {uri!r} cannot be read ({exc.strerror or exc}); make it readable by this user, "
                              "or copy it somewhere that is") from None
    return fs, path, info


def _read(fs: Any, path: str, info: dict, uri: str, name: str, options: Mapping[str, Any] | None) -> Table:
    if info.get("type") == "directory":
        return _read_datasets_dir(fs, path, uri, name, options)
    suffix = PurePosixPath(path).suffix.lower()
    if suffix not in _SUFFIX_FORMAT:
        shown = suffix or "(no suffix)"
        raise ValueError(f"{name} {uri!r} has an unsupported format {shown!r}; use {SUPPORTED_FORMATS}")
    fmt = _SUFFIX_FORMAT[suffix]
    try:
        with explained(f"read {name} {uri}", uri), fs.open(path, "rb") as fileobj:
            return _READERS[fmt](fileobj)
    except OSError as exc:
        if is_explained(exc):
            raise  # it already says which setting to fix
        if not isinstance(exc, PermissionError):
            raise ValueError(f"could not read {name} {uri!r} as {fmt}: {exc}") from exc
        raise PermissionError(f"{name} {uri!r} cannot be read ({exc.strerror or exc}); make it readable by this user, "
                              "or copy it somewhere that is") from exc
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 4]
        raise ValueError(
            f"{name} {uri!r} is not valid UTF-8 text (bytes {bad!r}: {exc.reason}); re-save it as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 in.{suffix.lstrip('.')} > out.{suffix.lstrip('.')}, or write Parquet"
        ) from exc
    except ValueError as exc:  # pyarrow/pandas/json errors are ValueError/OSError
        raise ValueError(f"could not read {name} {uri!r} as {fmt}: {exc}") from exc


def _read_parquet(fileobj: Any) -> Table:
    import pyarrow.parquet as pq

    # ParquetFile, not read_table: read_table refuses a schema that repeats a name ("Multiple matches for
    # FieldRef"), and to_pydict() would keep the last copy; CSV keeps the first, and so does this.
    table = pq.ParquetFile(fileobj).read()
    columns: dict[str, list] = {}
    for i, column in enumerate(table.column_names):
        if column not in columns:
            columns[column] = table.column(i).to_pylist()
    return Table(columns, list(table.column_names))


def _csv_header(fileobj: Any) -> list[str]:
    """The header row as written: pandas renames a repeated name ('text', 'text.1'), hiding the repeat."""
    text = io.TextIOWrapper(fileobj, encoding="utf-8-sig", newline="")  # -sig: a BOM is not part of a name
    try:
        return next((row for row in csv.reader(text) if row), [])  # pandas skips blank lines before it too
    finally:
        text.detach()  # leaves fileobj open for pandas
        fileobj.seek(0)


def _read_csv(fileobj: Any) -> Table:
    import pandas as pd

    header = _csv_header(fileobj)
    # Only empty cells are missing: a text that reads "NA" or "null" is still a text.
    frame = pd.read_csv(fileobj, keep_default_na=False, na_values=[""])
    return Table({str(c): frame[c].tolist() for c in frame.columns}, header)


def _json_lines(text: str) -> list[Any]:
    """One JSON value per non-blank line; an error names the file's line, not the position in that line."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number} is not valid JSON: {exc.msg} at column {exc.colno}") from None
    return records


def _read_json(fileobj: Any) -> Table:
    text = fileobj.read().decode("utf-8")
    # Parsed with json, not pandas: pandas would turn date-like texts into timestamps.
    stripped = text.lstrip()
    records = json.loads(text) if stripped.startswith("[") else _json_lines(text)
    if not all(isinstance(r, dict) for r in records):
        raise ValueError("every JSON line (or array item) must be an object like {\"text\": ..., \"label\": ...}")
    columns: dict[str, list] = {}
    for i, record in enumerate(records):
        for key in record:
            columns.setdefault(key, [None] * i)
        for key, values in columns.items():
            values.append(record.get(key))
    return Table(columns, list(columns))


_READERS = {"parquet": _read_parquet, "csv": _read_csv, "json": _read_json}


def _read_datasets_dir(fs: Any, path: str, uri: str, name: str, options: Mapping[str, Any] | None) -> Table:
    if fs.exists(f"{path}/dataset_dict.json"):
        splits = json.loads(fs.cat_file(f"{path}/dataset_dict.json")).get("splits", [])
        raise ValueError(
            f"{name} {uri!r} is a DatasetDict with splits {splits}; point at one split, e.g. {uri.rstrip('/')}/train"
        )
    if not fs.exists(f"{path}/state.json"):
        raise ValueError(
            f"{name} {uri!r} is a directory but not one saved by datasets.Dataset.save_to_disk (no state.json); "
            f"use {SUPPORTED_FORMATS}"
        )
    import datasets

    dataset = datasets.load_from_disk(uri, storage_options=dict(options or {}) or None)
    return Table({column: list(dataset[column]) for column in dataset.column_names}, list(dataset.column_names))


def content_hash(data: LabeledTexts) -> str:
    """sha256 of the ``(text, label)`` rows in order (order matters: pairs are drawn by index)."""
    digest = hashlib.sha256(b"setfit_core.pipeline rows v1\n")
    for text, label in zip(data.texts, data.labels, strict=True):
        # Labels are validated ints, strings or 0/1 lists, so plain json.dumps is canonical here.
        digest.update(json.dumps([text, label], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# Every task of a flow run reads the same splits; validating and hashing a large eval set in each one
# would cost more than the head stage. Entries are keyed by what the filesystem reports about the
# file (size, mtime and inode, or S3 ETag), so an edited or replaced file is read again.
_SPLIT_CACHE: OrderedDict[str, LoadedSplit] = OrderedDict()
_SPLIT_CACHE_SIZE = 8


def _file_identity(uri: str, info: dict[str, Any]) -> str | None:
    if info.get("type") != "file":
        return None  # a datasets directory: not cached
    stamp = [info.get(k) for k in ("size", "mtime", "ino", "ETag", "LastModified")]
    return json.dumps([uri, *map(str, stamp)]) if any(s is not None for s in stamp[1:]) else None


def load_split(
    uri: str,
    name: str,
    column_mapping: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> LoadedSplit:
    """Read, map columns, validate (`load_labeled`) and hash one split; ``name`` appears in errors."""
    fs, path, info = _locate(uri, name, storage_options)
    identity = _file_identity(uri, info)
    key = json.dumps([identity, name, dict(column_mapping or {})], sort_keys=True) if identity else None
    if key is not None and key in _SPLIT_CACHE:
        _SPLIT_CACHE.move_to_end(key)
        return _SPLIT_CACHE[key]
    table = _read(fs, path, info, uri, name, storage_options)
    data = load_labeled(table.columns, column_mapping, name, column_names=table.names)
    split = LoadedSplit(name, uri, data, content_hash(data))
    if key is not None:
        _SPLIT_CACHE[key] = split
        while len(_SPLIT_CACHE) > _SPLIT_CACHE_SIZE:
            _SPLIT_CACHE.popitem(last=False)
    return split


def dataset_label(uri: str) -> str:
    """A short readable name for run names: ``.../sst2/train.parquet`` -> ``sst2-train``."""
    parts = [p for p in re.split(r"[/\\]", str(uri).rstrip("/")) if p]
    if not parts:
        return "data"
    stem = PurePosixPath(parts[-1]).stem
    words = [parts[-2], stem] if stem.lower() in _GENERIC_STEMS and len(parts) > 1 else [stem]
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(words).lower()).strip("-")
    return slug[:40] or "data"


def write_tables(fileobj: Any, tables: Iterable[Any]) -> int:
    """Stream pyarrow tables into one Parquet file (one row group each, the first one's schema).

    Returns the rows written; 0 when `tables` was empty (then nothing was written: callers decide
    whether that is an error).
    """
    import pyarrow.parquet as pq

    writer, rows = None, 0
    try:
        for table in tables:
            writer = writer or pq.ParquetWriter(fileobj, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows

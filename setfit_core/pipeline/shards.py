"""Shards: split work into contiguous ranges, write each range's result as a Parquet part, read parts back.

No scheduler here: anything that can call a function per range (a Dask cluster through the Prefect
tasks in ``tasks/``, a process pool, a loop) can shard a stage. Parts live under a temporary prefix
on the same filesystem as the result (the artifacts root, local or ``s3://``), because that is the
only place workers on different machines can all reach. The prefix name starts with ``.tmp-``, so
the artifact store never mistakes it for a stage and its ``cleanup_temp`` removes a crashed run's
leftovers on local roots; nothing under it is ever published as is.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from setfit_core.pipeline.data_io import url_to_fs, write_tables

logger = logging.getLogger(__name__)

PART_NAME = "part-{index:05d}.parquet"


@dataclass(frozen=True)
class ShardLayout:
    """Where the parts go and which ``[start, stop)`` chunk range each shard encodes."""

    prefix: str
    ranges: list[tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "ranges": [list(r) for r in self.ranges]}


def shard_ranges(units: int, shards: int) -> list[tuple[int, int]]:
    """`shards` contiguous, near-equal ``[start, stop)`` ranges over ``range(units)``; never an empty one.

    Fewer ranges than `shards` when there are fewer units than shards (a shard of nothing is only
    overhead). Earlier ranges get the extra unit, so the result depends on `units` and `shards` alone.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1; got {shards!r}")
    if units < 0:
        raise ValueError(f"units must be >= 0; got {units!r}")
    count = min(shards, units)
    size, extra = divmod(units, count) if count else (0, 0)
    ranges, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def temp_prefix(parent: str, name: str) -> str:
    """A fresh ``<parent>/.tmp-<name>-shards-<hex>`` URI; `parent` is a local directory or an ``s3://`` prefix."""
    return f"{str(parent).rstrip('/')}/.tmp-{name}-shards-{secrets.token_hex(6)}"


def part_uri(prefix: str, index: int) -> str:
    """The URI of part `index` under a temp prefix; zero-padded so a listing sorts in shard order."""
    return f"{prefix}/{PART_NAME.format(index=index)}"


def write_part(uri: str, tables: Iterable[pa.Table], storage_options: Mapping[str, Any] | None = None) -> int:
    """Write `tables` (one row group each, the schema of the first) to the Parquet part at `uri`.

    Returns the row count. A part is only read after every shard finished, so a failed shard needs
    no atomic write: its half-written part goes with the whole temp prefix.
    """
    fs, path = url_to_fs(uri, storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fileobj:
        rows = write_tables(fileobj, tables)
    if rows == 0:
        raise ValueError(f"shard part {uri!r} got no rows; every shard must cover at least one unit of work")
    return rows


def iter_parts(uris: Iterable[str], storage_options: Mapping[str, Any] | None = None) -> Iterator[pa.Table]:
    """Every row group of the parts, in the order given (streamed: one row group in memory at a time)."""
    for uri in uris:
        fs, path = url_to_fs(uri, storage_options)
        if not fs.exists(path):
            raise FileNotFoundError(f"shard part {uri!r} does not exist; did its shard fail? Rerun the stage")
        with fs.open(path, "rb") as fileobj:
            parquet = pq.ParquetFile(fileobj)
            for group in range(parquet.num_row_groups):
                yield parquet.read_row_group(group)


def part_schema(uri: str, storage_options: Mapping[str, Any] | None = None) -> pa.Schema:
    fs, path = url_to_fs(uri, storage_options)
    with fs.open(path, "rb") as fileobj:
        return pq.ParquetFile(fileobj).schema_arrow


def remove_prefix(prefix: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Remove a temp prefix and every part under it; False when there was nothing to remove."""
    if ".tmp-" not in prefix.rstrip("/").rsplit("/", 1)[-1]:
        # A guard against removing a real directory: only ever delete what temp_prefix named.
        raise ValueError(f"refusing to remove {prefix!r}: not a shard temp prefix (.tmp-*)")
    fs, path = url_to_fs(prefix, storage_options)
    if not fs.exists(path):
        return False
    fs.rm(path, recursive=True)
    logger.info("removed shard parts under %s", prefix)
    return True

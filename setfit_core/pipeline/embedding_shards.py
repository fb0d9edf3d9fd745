"""The embeddings stage in shards: each shard encodes a range of chunks into a Parquet part, then one
assemble step turns the parts into the stage, published through the store like any other stage.

    plan = embedding_shard_layout(store, spec, data, shards=2)
    parts = [encode_shard(store, spec, data, r, part_uri(plan.prefix, i)) for i, r in enumerate(plan.ranges)]
    result = assemble_embeddings(store, spec, data, parts)        # publishes like any stage
    remove_prefix(plan.prefix)                                    # the parts are not needed any more

Each part holds (``text_sha256``, ``embedding``) of its distinct texts, one row group per chunk: a
text that occurs in several rows is encoded once, by one shard. The stage keeps its single
``embeddings.parquet`` in row order (assemble maps the parts back onto the rows): the head and
evaluation readers, and every stage written before sharding existed, stay as they are, and the
stage's files are the same whether it was sharded or not. The key does not know about shards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.model_io.body_loading import embedding_dimension
from setfit_core.pipeline.embeddings_stage import (
    Chunk,
    chunk_count,
    distinct_texts,
    encode_chunks,
    load_encoder,
    write_stage_files,
)
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute
from setfit_core.pipeline.shards import (
    ShardLayout,
    iter_parts,
    part_schema,
    shard_ranges,
    temp_prefix,
    write_part,
)

logger = logging.getLogger(__name__)


def find_embeddings(store: ArtifactStore, spec: StageSpec) -> StageResult | None:
    """The verified stage as a "reused" result, or None: a sharded run checks this before starting a cluster."""
    started = time.perf_counter()
    manifest = store.find(spec.stage, spec.key)
    if manifest is None:
        return None
    seconds = time.perf_counter() - started
    return StageResult(spec.stage, spec.key, "reused", seconds, store.stage_uri(spec.stage, spec.key), manifest)


def part_table_schema(dim: int) -> pa.Schema:
    return pa.schema([("text_sha256", pa.string()), ("embedding", pa.list_(pa.float32(), dim))])


def embedding_shard_layout(store: ArtifactStore, spec: StageSpec, data: PipelineData, shards: int) -> ShardLayout:
    """Chunk ranges for `shards` shards and a fresh temp prefix beside the stage (nothing is written yet)."""
    if data.hashes != spec.inputs:
        raise RuntimeError("the data differs from what this embeddings stage was planned with; rerun")
    parent = store.stage_uri(spec.stage, spec.key).rsplit("/", 1)[0]
    ranges = shard_ranges(chunk_count(len(distinct_texts(data))), shards)
    return ShardLayout(temp_prefix(parent, spec.key), ranges)


def encode_shard(
    store: ArtifactStore,
    spec: StageSpec,
    data: PipelineData,
    chunks: tuple[int, int],
    uri: str,
    batch_size: int = 64,
    device: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode chunks ``[start, stop)`` of the distinct texts into the Parquet part at `uri`.

    `storage_options` are the artifacts root's (the part lives under it).
    """
    model = load_encoder(store, spec, data, device)
    dim = embedding_dimension(model.model_body)
    blocks = encode_chunks(model, distinct_texts(data), range(*chunks), batch_size)
    tables = (_part_table(block, dim) for block in blocks)
    texts = write_part(uri, tables, storage_options)
    logger.info("embeddings %s: chunks %s of the distinct texts (%d) -> %s", spec.key[:12], chunks, texts, uri)
    return {"part": uri, "texts": texts, "chunks": list(chunks)}


def _part_table(block: Chunk, dim: int) -> pa.Table:
    vectors = np.stack(list(block.values())).astype(np.float32, copy=False)
    return pa.table({
        "text_sha256": pa.array(list(block), pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    }, schema=part_table_schema(dim))


def assemble_embeddings(
    store: ArtifactStore,
    spec: StageSpec,
    data: PipelineData,
    parts: list[str],
    progress: ProgressFn | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> StageResult:
    """Publish the stage from the parts (in shard order) through `find_or_compute`: manifest last, atomic.

    If a verified stage already exists (another run won the race) it is reused and the parts ignored.
    """
    if data.hashes != spec.inputs:
        raise RuntimeError("the data differs from what this embeddings stage was planned with; rerun")

    def compute(writer: StageWriter) -> None:
        dim = part_schema(parts[0], storage_options).field("embedding").type.list_size
        write_stage_files(writer, data, _read_chunks(parts, storage_options), dim, progress)

    if not parts:
        raise ValueError("assemble_embeddings needs at least one part; got none")
    return find_or_compute(store, spec, compute)


def _read_chunks(parts: list[str], options: Mapping[str, Any] | None) -> Iterator[Chunk]:
    for table in iter_parts(parts, options):
        dim = table.schema.field("embedding").type.list_size
        vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim)
        yield dict(zip(table.column("text_sha256").to_pylist(), vectors, strict=True))

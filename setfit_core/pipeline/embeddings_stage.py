"""Stage 3, embeddings: the trained body encodes every distinct text of every split once.

``embeddings.parquet`` has one row per data row (``split``, ``row``, ``text_sha256``, ``label``,
``embedding`` as fixed-size list<float32>), written one row group per 512 rows, so memory is
bounded by a chunk of vectors plus those of texts that occur again later (kept only until their
last occurrence). ``labels.json`` says what the class ids mean, so the head stage needs nothing else.

Encoding is cut into chunks of `ENCODE_CHUNK` distinct texts in first-occurrence order, one
``model.encode`` call each. The chunks depend on the data alone, so a sharded run (``shards.py``:
each shard encodes a range of chunks into a Parquet part) makes exactly the calls the unsharded run
makes and yields bitwise the same vectors (SentenceTransformer.encode sorts a call's texts by
length and pads per batch, so a different cut could change the last bits).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.model_io.body_loading import embedding_dimension, load_body
from setfit_core.modeling import SetFitModel
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute, parent_dir

EMBEDDINGS_FILE = "embeddings.parquet"
LABELS_FILE = "labels.json"
ROWS_PER_GROUP = 512
ENCODE_CHUNK = 512  # distinct texts per model.encode call; also the unit that shards split

# {text_sha256: vector} of one chunk of distinct texts
Chunk = dict[str, np.ndarray]


def schema(dim: int) -> pa.Schema:
    return pa.schema([
        ("split", pa.string()),
        ("row", pa.int64()),
        ("text_sha256", pa.string()),
        ("label", pa.int64()),
        ("embedding", pa.list_(pa.float32(), dim)),
    ])


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_embeddings(
    store: ArtifactStore,
    spec: StageSpec,
    data: PipelineData,
    progress: ProgressFn | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> StageResult:
    def compute(writer: StageWriter) -> None:
        model = load_encoder(store, spec, data, device)
        distinct = distinct_texts(data)
        chunks = encode_chunks(model, distinct, range(chunk_count(len(distinct))), batch_size)
        dim = embedding_dimension(model.model_body)
        write_stage_files(writer, data, chunks, dim, progress)

    return find_or_compute(store, spec, compute)


def load_encoder(store: ArtifactStore, spec: StageSpec, data: PipelineData, device: str | None) -> SetFitModel:
    """The body stage as a `SetFitModel`, after checking `data` is what the stage was planned with."""
    if data.hashes != spec.inputs:
        raise RuntimeError("the data differs from what this embeddings stage was planned with; rerun")
    # Encoded exactly as SetFitModel.encode does at prediction time.
    return SetFitModel(load_body(str(parent_dir(store, spec, "body")), device=device))


def write_stage_files(
    writer: StageWriter, data: PipelineData, chunks: Iterator[Chunk], dim: int, progress: ProgressFn | None
) -> None:
    """``embeddings.parquet``, ``labels.json`` and the stage metrics, from the chunks in order."""
    counts = write_embeddings(writer.dir / EMBEDDINGS_FILE, data, chunks, dim, progress)
    labels = {"labels": data.labels, "num_classes": data.num_classes}
    (writer.dir / LABELS_FILE).write_text(json.dumps(labels, indent=2), encoding="utf-8")
    writer.metrics.update(counts, dim=dim)


def split_hashes(data: PipelineData) -> dict[str, list[str]]:
    return {name: [text_sha256(t) for t in split.texts] for name, split in data.splits.items()}


def distinct_texts(data: PipelineData) -> list[tuple[str, str]]:
    """(sha256, text) of every distinct text, in order of first occurrence over the splits in order."""
    seen: dict[str, str] = {}
    for split in data.splits.values():
        for text in split.texts:
            seen.setdefault(text_sha256(text), text)
    return list(seen.items())


def chunk_count(distinct: int) -> int:
    return -(-distinct // ENCODE_CHUNK)


def encode_chunks(
    model: SetFitModel, distinct: list[tuple[str, str]], chunks: Iterable[int], batch_size: int
) -> Iterator[Chunk]:
    """Vectors of the given chunks of `distinct`, one ``model.encode`` call per chunk."""
    for index in chunks:
        block = distinct[index * ENCODE_CHUNK : (index + 1) * ENCODE_CHUNK]
        vectors = np.asarray(model.encode([t for _, t in block], batch_size=batch_size), dtype=np.float32)
        yield dict(zip((h for h, _ in block), vectors, strict=True))


class _ChunkedVectors:
    """Row vectors from chunks of distinct texts; keeps a vector only while a later row still needs it.

    Chunks come in first-occurrence order, so a row's vector is in a chunk already read or the next one.
    """

    def __init__(self, chunks: Iterator[Chunk], hashes: list[str]) -> None:
        self.chunks = chunks
        self.remaining = Counter(hashes)
        self.kept: dict[str, np.ndarray] = {}
        self.distinct = 0

    def vectors(self, hashes: list[str]) -> np.ndarray:
        for h in hashes:
            while h not in self.kept:
                chunk = next(self.chunks, None)
                if chunk is None:
                    raise RuntimeError(f"no vector for text {h[:12]}: the chunks do not cover the data; rerun")
                self.kept.update(chunk)
                self.distinct += len(chunk)
        out = np.stack([self.kept[h] for h in hashes]).astype(np.float32, copy=False)
        for h in hashes:
            self.remaining[h] -= 1
            if self.remaining[h] == 0:
                del self.kept[h]
        return out


def write_embeddings(
    path: Path, data: PipelineData, chunks: Iterator[Chunk], dim: int, progress: ProgressFn | None
) -> dict[str, Any]:
    hashes = split_hashes(data)
    source = _ChunkedVectors(chunks, [h for hs in hashes.values() for h in hs])
    total, done = sum(len(s) for s in data.splits.values()), 0
    with pq.ParquetWriter(path, schema(dim)) as writer:
        for name, split in data.splits.items():
            for start in range(0, len(split), ROWS_PER_GROUP):  # row groups never mix splits
                stop = min(start + ROWS_PER_GROUP, len(split))
                vectors = source.vectors(hashes[name][start:stop])
                writer.write_table(_rows_table(name, start, stop, hashes[name], split.label_ids, vectors, dim))
                done += stop - start
                if progress is not None:
                    progress(done, total, f"embedding {name}")
    rows = {f"rows_{name}": len(split) for name, split in data.splits.items()}
    return {**rows, "texts_encoded": source.distinct}


def _rows_table(
    name: str, start: int, stop: int, hashes: list[str], label_ids: Any, vectors: np.ndarray, dim: int
) -> pa.Table:
    return pa.table({
        "split": pa.array([name] * (stop - start), pa.string()),
        "row": pa.array(np.arange(start, stop), pa.int64()),
        "text_sha256": pa.array(hashes[start:stop], pa.string()),
        "label": pa.array(label_ids[start:stop], pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    }, schema=schema(dim))


def iter_split(stage_dir: Path, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(embeddings [n, dim] float32, class ids [n]) of one split, one row group at a time."""
    parquet = pq.ParquetFile(stage_dir / EMBEDDINGS_FILE)
    dim = parquet.schema_arrow.field("embedding").type.list_size
    for batch in parquet.iter_batches(columns=["split", "label", "embedding"]):
        mask = np.asarray(batch.column("split").to_pylist()) == split
        if not mask.any():
            continue
        vectors = batch.column("embedding").flatten().to_numpy().reshape(-1, dim)
        yield vectors[mask], batch.column("label").to_numpy()[mask]


def read_split(stage_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All embeddings and class ids of one split (the head needs the whole train split at once)."""
    parts = list(iter_split(stage_dir, split))
    if not parts:
        raise ValueError(f"{stage_dir / EMBEDDINGS_FILE} has no rows of split {split!r}")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_labels(stage_dir: Path) -> dict[str, Any]:
    return json.loads((stage_dir / LABELS_FILE).read_text(encoding="utf-8"))

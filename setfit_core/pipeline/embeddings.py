"""Stage 3, embeddings: the trained body encodes every distinct text of every split once.

``embeddings.parquet`` has one row per data row (``split``, ``row``, ``text_sha256``, ``label``,
``embedding`` as fixed-size list<float32>), written one row group per encoded batch, so memory is
bounded by a batch plus the vectors of texts that occur again later (kept only until their last
occurrence). ``labels.json`` says what the class ids mean, so the head stage needs nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.body_loading import embedding_dimension, load_body
from setfit_core.modeling import SetFitModel
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute, parent_dir

EMBEDDINGS_FILE = "embeddings.parquet"
LABELS_FILE = "labels.json"
ROWS_PER_GROUP = 512


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
        if data.hashes != spec.inputs:
            raise RuntimeError("the data differs from what this embeddings stage was planned with; rerun")
        # Encoded exactly as SetFitModel.encode does at prediction time.
        model = SetFitModel(load_body(str(parent_dir(store, spec, "body")), device=device))
        counts = write_embeddings(writer.dir / EMBEDDINGS_FILE, model, data, batch_size, progress)
        labels = {"labels": data.labels, "num_classes": data.num_classes}
        (writer.dir / LABELS_FILE).write_text(json.dumps(labels, indent=2), encoding="utf-8")
        writer.metrics.update(counts, dim=embedding_dimension(model.model_body))

    return find_or_compute(store, spec, compute)


class _OnceEncoder:
    """Encodes each distinct text once; keeps a vector only while a later row still needs it."""

    def __init__(self, model: SetFitModel, hashes: list[str], batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size
        self.remaining = Counter(hashes)
        self.kept: dict[str, np.ndarray] = {}
        self.encoded = 0

    def vectors(self, texts: list[str], hashes: list[str]) -> np.ndarray:
        todo = {h: t for t, h in zip(texts, hashes, strict=True) if h not in self.kept}
        vectors = self.model.encode(list(todo.values()), batch_size=self.batch_size) if todo else []
        fresh = dict(zip(todo, vectors, strict=True))
        self.encoded += len(todo)
        out = np.stack([fresh[h] if h in fresh else self.kept[h] for h in hashes]).astype(np.float32)
        for h in hashes:
            self.remaining[h] -= 1
        self.kept.update((h, v) for h, v in fresh.items() if self.remaining[h] > 0)
        for h in hashes:
            if self.remaining[h] == 0:
                self.kept.pop(h, None)
        return out


def write_embeddings(
    path: Path, model: SetFitModel, data: PipelineData, batch_size: int, progress: ProgressFn | None
) -> dict[str, Any]:
    hashes = {name: [text_sha256(t) for t in split.texts] for name, split in data.splits.items()}
    encoder = _OnceEncoder(model, [h for hs in hashes.values() for h in hs], batch_size)
    total, done = sum(len(s) for s in data.splits.values()), 0
    dim = embedding_dimension(model.model_body)
    with pq.ParquetWriter(path, schema(dim)) as writer:
        for name, split in data.splits.items():
            for start in range(0, len(split), ROWS_PER_GROUP):  # row groups never mix splits
                stop = min(start + ROWS_PER_GROUP, len(split))
                vectors = encoder.vectors(split.texts[start:stop], hashes[name][start:stop])
                writer.write_table(pa.table({
                    "split": pa.array([name] * (stop - start), pa.string()),
                    "row": pa.array(np.arange(start, stop), pa.int64()),
                    "text_sha256": pa.array(hashes[name][start:stop], pa.string()),
                    "label": pa.array(split.label_ids[start:stop], pa.int64()),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
                }, schema=schema(dim)))
                done += stop - start
                if progress is not None:
                    progress(done, total, f"embedding {name}")
    rows = {f"rows_{name}": len(split) for name, split in data.splits.items()}
    return {**rows, "texts_encoded": encoder.encoded}


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

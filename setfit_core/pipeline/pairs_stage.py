"""Stage 1, pairs: the training examples of the contrastive phase as Parquet.

Files:
- ``texts.parquet`` (``text``, ``label``): the training rows in order, labels as class ids. Group
  losses (triplet, SupCon) train on these label-grouped rows directly.
- ``pairs.parquet`` (``sentence_1``, ``sentence_2``, ``label`` 1.0/0.0), pair losses only: the pairs
  of `setfit_core.training.batches.sample_pairs`, written and read back one row group at a time, so
  memory holds the index arrays (12 bytes a pair) plus one row group of strings, never a list of
  every pair's texts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import ProgressFn, StageResult, find_or_compute
from setfit_core.pipeline.stage_config import pairs_args
from setfit_core.training.batches import sample_pairs
from setfit_core.training.sampling import PairSet

TEXTS_FILE = "texts.parquet"
PAIRS_FILE = "pairs.parquet"
ROW_GROUP = 65_536
PAIRS_SCHEMA = pa.schema([("sentence_1", pa.string()), ("sentence_2", pa.string()), ("label", pa.float32())])


def run_pairs(
    store: ArtifactStore, spec: StageSpec, data: PipelineData, progress: ProgressFn | None = None
) -> StageResult:
    def compute(writer: StageWriter) -> None:
        texts, ids = data.train.texts, data.train.label_ids
        pq.write_table(pa.table({"text": pa.array(texts, pa.string()), "label": pa.array(ids, pa.int64())}),
                       writer.dir / TEXTS_FILE)
        writer.metrics.update(rows=len(texts), num_classes=data.num_classes)
        if spec.config["kind"] == "pair":
            pairs = sample_pairs(ids, pairs_args(spec.config))
            write_pairs(writer.dir / PAIRS_FILE, texts, pairs, progress)
            writer.metrics.update(pairs=len(pairs), positive=int(pairs.label.sum()))

    return find_or_compute(store, spec, compute)


def write_pairs(path: Path, texts: list[str], pairs: PairSet, progress: ProgressFn | None = None) -> None:
    column = pa.array(texts, pa.string())
    with pq.ParquetWriter(path, PAIRS_SCHEMA) as writer:
        for start in range(0, len(pairs), ROW_GROUP):
            stop = min(start + ROW_GROUP, len(pairs))
            writer.write_table(pa.table({
                "sentence_1": column.take(pa.array(pairs.first[start:stop])),
                "sentence_2": column.take(pa.array(pairs.second[start:stop])),
                "label": pa.array(pairs.label[start:stop], pa.float32()),
            }, schema=PAIRS_SCHEMA))
            if progress is not None:
                progress(stop, len(pairs), "writing pairs")


def read_training_rows(stage_dir: Path) -> tuple[list[str], np.ndarray]:
    """The training rows (texts, class ids) a pairs stage wrote."""
    table = pq.read_table(stage_dir / TEXTS_FILE)
    return table.column("text").to_pylist(), table.column("label").to_numpy().astype(np.int64)


def read_pair_set(stage_dir: Path, texts: list[str]) -> PairSet:
    """The stored pairs as indices into `texts` (each text's first occurrence)."""
    index: dict[str, int] = {}
    for i, text in enumerate(texts):
        index.setdefault(text, i)
    firsts, seconds, labels = [], [], []
    parquet = pq.ParquetFile(stage_dir / PAIRS_FILE)
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group)
        firsts.append(_indices(table.column("sentence_1").to_pylist(), index))
        seconds.append(_indices(table.column("sentence_2").to_pylist(), index))
        labels.append(table.column("label").to_numpy().astype(np.float32))
    if not labels:
        return PairSet(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.float32))
    return PairSet(np.concatenate(firsts), np.concatenate(seconds), np.concatenate(labels))


def _indices(sentences: list[str], index: dict[str, int]) -> np.ndarray:
    try:
        return np.fromiter((index[s] for s in sentences), dtype=np.int32, count=len(sentences))
    except KeyError as exc:
        raise ValueError(f"pairs.parquet holds a sentence that is not in texts.parquet: {str(exc)[:80]}") from exc

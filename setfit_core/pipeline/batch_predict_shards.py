"""Batch prediction in shards: each shard predicts a range of input batches into a Parquet part, then
one merge writes the parts, in order, to the output (one file, same schema and row order as
`predict_to_parquet`).

    layout = predict_shard_layout("in.parquet", "out.parquet", shards=4)
    parts = [predict_shard(model, "in.parquet", part_uri(layout.prefix, i), r) for i, r in enumerate(layout.ranges)]
    merge_predictions(parts, "out.parquet")          # atomic: no half-written output
    remove_prefix(layout.prefix)

The unit is a batch of `rows_per_group` input rows, the same batches the unsharded run predicts in
one ``predict_proba`` call each, so both give bitwise the same probabilities.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa

from setfit_core.engine.inference import check_inference_dtype, resolve_batch_size
from setfit_core.modeling import SetFitModel
from setfit_core.pipeline.batch_predict import (
    CPU_BATCH_SIZE,
    check_column,
    check_engine,
    check_texts,
    fetch_model,
    is_parquet,
    iter_texts,
    load_predictor,
    open_parquet,
    prediction_table,
    predictions,
    resolve_output,
    write_atomically,
)
from setfit_core.pipeline.data_io import read_columns, url_to_fs, write_tables
from setfit_core.pipeline.shards import ShardLayout, iter_parts, shard_ranges, temp_prefix, write_part

logger = logging.getLogger(__name__)


def count_rows(uri: str, text_column: str, storage_options: Mapping[str, Any] | None = None) -> int:
    """Rows of `uri`: from the footer for Parquet, else by reading it (CSV / JSONL have no row count)."""
    if is_parquet(uri):
        with open_parquet(uri, text_column, storage_options) as parquet:
            return parquet.metadata.num_rows
    columns = read_columns(uri, "input_data", storage_options)
    check_column(list(columns), text_column, uri)
    return len(columns[text_column])


def predict_shard_layout(
    input_data: str,
    output_data: str,
    shards: int,
    text_column: str = "text",
    rows_per_group: int = 4096,
    storage_options: Mapping[str, Any] | None = None,
) -> ShardLayout:
    """Batch ranges for `shards` shards and a temp prefix beside the output file (`resolve_output`);
    nothing is written yet."""
    output_data = resolve_output(output_data, storage_options)
    rows = count_rows(input_data, text_column, storage_options)
    if rows == 0:
        raise ValueError(f"input_data {input_data!r} has no rows to predict")
    parent, _, name = str(output_data).rstrip("/").rpartition("/")
    return ShardLayout(temp_prefix(parent or ".", name), shard_ranges(-(-rows // rows_per_group), shards))


def predict_shard(
    model: str,
    input_data: str,
    uri: str,
    batches: tuple[int, int],
    text_column: str = "text",
    batch_size: int | None = None,
    rows_per_group: int = 4096,
    storage_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    engine: str = "torch",
    inference_dtype: str | None = None,
) -> dict[str, Any]:
    """Predict input batches ``[start, stop)`` (of `rows_per_group` rows each) into the part at `uri`."""
    started = time.perf_counter()
    check_engine(engine)
    check_inference_dtype(inference_dtype)
    with fetch_model(model, storage_options) as location:
        loaded = load_predictor(model, location, device, engine, inference_dtype)
        batch_size = resolve_batch_size(batch_size, loaded.device, CPU_BATCH_SIZE)
        texts = iter_texts(input_data, text_column, rows_per_group, storage_options)
        tables = _shard_tables(loaded, texts, batches, batch_size, input_data)
        rows = write_part(uri, tables, storage_options)
    seconds = time.perf_counter() - started
    logger.info("predicted batches %s (%d rows) in %.2f s -> %s", batches, rows, seconds, uri)
    return {"part": uri, "rows": rows, "batches": list(batches), "seconds": seconds, "engine": engine}


def _shard_tables(
    model: SetFitModel, batches: Iterator[list], span: tuple[int, int], batch_size: int, uri: str
) -> Iterator[pa.Table]:
    # Earlier batches are read and skipped (reading text is cheap next to the model), so every shard
    # sees the same batch boundaries as the unsharded run.
    offset = 0
    for index, texts in enumerate(batches):
        if index >= span[1]:
            return
        if index >= span[0]:
            check_texts(texts, offset, uri)
            ids, probs = predictions(model, texts, batch_size)
            yield prediction_table(model, texts, ids, probs)
        offset += len(texts)


def merge_predictions(
    parts: list[str], output_data: str, storage_options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write every part's row groups, in order, to the output file (`resolve_output`); a failure leaves no
    output behind."""
    if not parts:
        raise ValueError("merge_predictions needs at least one part; got none")
    started = time.perf_counter()
    output_data = resolve_output(output_data, storage_options)
    fs, path = url_to_fs(output_data, storage_options)

    rows = write_atomically(fs, path, lambda fileobj: write_tables(fileobj, iter_parts(parts, storage_options)))
    return {"output_data": output_data, "rows": rows, "seconds": time.perf_counter() - started}

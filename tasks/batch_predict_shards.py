"""Batch prediction tasks in shards (`task_runner="dask"`): plan, one task per shard on the Dask
workers, then one merge into the output file (same contract as `predict_task`)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import in_run, run_logger
from setfit_pipeline.tasks.dask_runner import current_dask_workers

from setfit_core.pipeline.batch_predict_shards import merge_predictions, predict_shard, predict_shard_layout
from setfit_core.pipeline.shards import part_uri


@task(name="predict-shards", task_run_name="predict shards [{input_data}]", cache_policy=NO_CACHE,
      persist_result=False)
def predict_shard_layout_task(
    input_data: str,
    output_data: str,
    shards: int | None,
    text_column: str = "text",
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"prefix": temp prefix beside the output, "shards": [{"index", "batches", "part"}, ...]}``."""
    count = shards or current_dask_workers()
    plan = predict_shard_layout(input_data, output_data, count, text_column, storage_options=storage_options)
    run_logger().info("predict: %d shard(s) of batch ranges %s, parts under %s", len(plan.ranges), plan.ranges,
                      plan.prefix)
    return {
        "prefix": plan.prefix,
        "shards": [{"index": i, "batches": list(r), "part": part_uri(plan.prefix, i)}
                   for i, r in enumerate(plan.ranges)],
    }


@task(name="predict-shard", task_run_name="predict shard {shard[index]} [{input_data}] {shard[batches]}",
      cache_policy=NO_CACHE, persist_result=False)
def predict_shard_task(
    model: str,
    input_data: str,
    shard: dict[str, Any],
    text_column: str = "text",
    batch_size: int | None = None,
    storage_options: dict[str, Any] | None = None,
    engine: str = "torch",
    inference_dtype: str | None = None,
) -> dict[str, Any]:
    result = predict_shard(model, input_data, shard["part"], tuple(shard["batches"]), text_column, batch_size,
                           storage_options=storage_options, engine=engine, inference_dtype=inference_dtype)
    run_logger().info("shard %d: %d rows in %.2f s", shard["index"], result["rows"], result["seconds"])
    return {**result, "index": shard["index"]}


@task(name="predict-merge", task_run_name="predict merge -> {output_data}", cache_policy=NO_CACHE,
      persist_result=False)
def merge_predictions_task(
    parts: list[dict[str, Any]], output_data: str, model: str, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the parts, in shard order, to `output_data` (atomically) and link it in the UI."""
    ordered = [p["part"] for p in sorted(parts, key=lambda p: p["index"])]
    result = merge_predictions(ordered, output_data, storage_options)
    result["seconds"] = result["seconds"] + max(p["seconds"] for p in parts)  # merge plus the slowest shard
    result["engine"] = parts[0].get("engine", "torch")
    run_logger().info("merged %d shard(s): %d rows -> %s", len(parts), result["rows"], output_data)
    if in_run():
        create_link_artifact(link=output_data if "://" in output_data else f"file://{output_data}",
                             link_text=f"predictions ({result['rows']} rows, {len(parts)} shards)",
                             description=f"model {model}")
    return result

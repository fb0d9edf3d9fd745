"""Stage 3 tasks in shards (`task_runner="dask"`): plan the shards, encode one shard per task on the
Dask workers, assemble and publish the stage. One task per shard, never per batch: thousands of tiny
task runs would stall the Prefect API.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import StageProgress, finish_stage, pipeline_run, run_logger
from setfit_pipeline.tasks.dask_runner import current_dask_workers

from setfit_core.pipeline.embedding_shards import (
    assemble_embeddings,
    embedding_shard_layout,
    encode_shard,
    find_embeddings,
)
from setfit_core.pipeline.results import check_parents
from setfit_core.pipeline.shards import part_uri

_NAME = "[{plan[dataset]}] {plan[keys][embeddings]:.12}"


@task(name="embeddings-find", task_run_name=f"embeddings find {_NAME}", cache_policy=NO_CACHE,
      persist_result=False)
def find_embeddings_task(job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
    """The stage as a "reused" result when a verified copy exists (sharded or not: the key is the same)."""
    run = pipeline_run(job, plan)
    spec = run.plan["embeddings"]
    check_parents(spec, {"body": body["key"]})
    result = find_embeddings(run.store, spec)
    return None if result is None else finish_stage(result, plan["dataset"], job["storage_options"])


@task(name="embeddings-shards", task_run_name=f"embeddings shards {_NAME}", cache_policy=NO_CACHE,
      persist_result=False)
def embedding_shard_layout_task(job: dict[str, Any], plan: dict[str, Any], shards: int | None) -> dict[str, Any]:
    """``{"prefix": temp prefix, "shards": [{"index", "chunks", "part"}, ...]}``; default one shard per worker."""
    run = pipeline_run(job, plan)
    count = shards or current_dask_workers()
    shard_plan = embedding_shard_layout(run.store, run.plan["embeddings"], run.data, count)
    run_logger().info("embeddings: %d shard(s) of chunk ranges %s, parts under %s", len(shard_plan.ranges),
                      shard_plan.ranges, shard_plan.prefix)
    return {
        "prefix": shard_plan.prefix,
        "shards": [{"index": i, "chunks": list(r), "part": part_uri(shard_plan.prefix, i)}
                   for i, r in enumerate(shard_plan.ranges)],
    }


@task(name="embeddings-shard", task_run_name="embeddings shard {shard[index]} [{plan[dataset]}] {shard[chunks]}",
      cache_policy=NO_CACHE, persist_result=False)
def embedding_shard_task(
    job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any], shard: dict[str, Any]
) -> dict[str, Any]:
    run = pipeline_run(job, plan)
    spec = run.plan["embeddings"]
    check_parents(spec, {"body": body["key"]})
    result = encode_shard(run.store, spec, run.data, tuple(shard["chunks"]), shard["part"], device=run.device,
                          storage_options=job["storage_options"])
    run_logger().info("shard %d: %d distinct texts -> %s", shard["index"], result["texts"], result["part"])
    return {**result, "index": shard["index"]}


@task(name="embeddings-assemble", task_run_name=f"embeddings assemble {_NAME}", cache_policy=NO_CACHE,
      persist_result=False)
def assemble_embeddings_task(
    job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any], parts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Publish the stage from the parts, in shard order (manifest last, atomic, like any stage)."""
    run = pipeline_run(job, plan)
    spec = run.plan["embeddings"]
    check_parents(spec, {"body": body["key"]})
    progress = StageProgress("embeddings", spec.key, "text")
    ordered = [p["part"] for p in sorted(parts, key=lambda p: p["index"])]
    result = assemble_embeddings(run.store, spec, run.data, ordered, progress, storage_options=job["storage_options"])
    progress.finish(result.status)
    return finish_stage(result, plan["dataset"], job["storage_options"])

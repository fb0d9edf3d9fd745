"""Task shared by the sharded subflows: remove a shard temp prefix, whether the run succeeded or not."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import run_logger

from setfit_core.pipeline.shards import remove_prefix


@task(name="remove-shard-parts", task_run_name="remove shard parts {prefix}", cache_policy=NO_CACHE,
      persist_result=False)
def remove_parts_task(prefix: str, storage_options: dict[str, Any] | None = None) -> bool:
    removed = remove_prefix(prefix, storage_options)
    run_logger().info("shard parts under %s: %s", prefix, "removed" if removed else "none left")
    return removed

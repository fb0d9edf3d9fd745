"""Stage 1 task: training pairs (or label-grouped rows) as Parquet."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import finish_stage, pipeline_run


# Reuse is decided by the library (a verified stage with the same key), not by Prefect's cache.
@task(name="pairs", task_run_name="pairs [{plan[dataset]}] {plan[keys][pairs]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def pairs_task(job: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    return finish_stage(pipeline_run(job, plan).run_stage("pairs"), plan["dataset"], job["storage_options"])

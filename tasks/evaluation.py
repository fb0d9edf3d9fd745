"""Stage 5 task: metrics of the head on eval / test."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import finish_stage, parent_keys, pipeline_run


@task(name="evaluation", task_run_name="evaluation [{plan[dataset]}] {plan[keys][evaluation]:.12}",
      cache_policy=NO_CACHE, persist_result=False)
def evaluation_task(
    job: dict[str, Any], plan: dict[str, Any], head: dict[str, Any], embeddings: dict[str, Any]
) -> dict[str, Any]:
    run = pipeline_run(job, plan)
    result = run.run_stage("evaluation", parents=parent_keys(run, "evaluation", head, embeddings))
    return finish_stage(result, plan["dataset"], job["storage_options"])

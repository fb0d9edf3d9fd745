"""Stage 2 task: contrastive body training, with a progress artifact updated per step."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import StageProgress, finish_stage, pipeline_run


@task(name="body", task_run_name="body [{plan[dataset]}] {plan[keys][body]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def body_task(job: dict[str, Any], plan: dict[str, Any], pairs: dict[str, Any]) -> dict[str, Any]:
    progress = StageProgress("body", plan["keys"]["body"], "step")
    result = pipeline_run(job, plan).run_stage("body", progress, parents={"pairs": pairs["key"]})
    progress.finish(result.status)
    return finish_stage(result, plan["dataset"], job["storage_options"])

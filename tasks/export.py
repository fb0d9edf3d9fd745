"""Export task: assemble the `SetFitModel.from_pretrained` directory from body and head."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import finish_stage, parent_keys, pipeline_run


@task(name="export", task_run_name="export [{plan[dataset]}] {plan[keys][model]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def export_task(job: dict[str, Any], plan: dict[str, Any], head: dict[str, Any], body: dict[str, Any]) -> dict:
    run = pipeline_run(job, plan)
    result = run.run_stage("model", parents=parent_keys(run, "model", head, body))
    return finish_stage(result, plan["dataset"], job["storage_options"])

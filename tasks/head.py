"""Stage 4 task: fit the head from the embeddings (end-to-end: from the body and the texts)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import finish_stage, parent_keys, pipeline_run


@task(name="head", task_run_name="head [{plan[dataset]}] {plan[keys][head]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def head_task(job: dict[str, Any], plan: dict[str, Any], embeddings: dict[str, Any], body: dict[str, Any]) -> dict:
    """Reads the embeddings, or (end_to_end) the body: the head's key names which."""
    run = pipeline_run(job, plan)
    result = run.run_stage("head", parents=parent_keys(run, "head", embeddings, body))
    return finish_stage(result, plan["dataset"], job["storage_options"])

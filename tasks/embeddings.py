"""Stage 3 task: encode every distinct text once, with a progress artifact updated per batch."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import StageProgress, finish_stage, pipeline_run


@task(name="embeddings", task_run_name="embeddings [{plan[dataset]}] {plan[keys][embeddings]:.12}",
      cache_policy=NO_CACHE, persist_result=False)
def embeddings_task(job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    progress = StageProgress("embeddings", plan["keys"]["embeddings"], "text")
    result = pipeline_run(job, plan).run_stage("embeddings", progress, parents={"body": body["key"]})
    progress.finish(result.status)
    return finish_stage(result, plan["dataset"], job["storage_options"])

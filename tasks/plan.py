"""Planning task: validate every input and compute every stage key before any stage runs."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import run_logger

from setfit_core.pipeline import PipelineJob, PipelineRun, dataset_label


def _run_name(parameters: dict[str, Any]) -> str:
    return f"plan [{dataset_label(parameters['job']['train_data'])}]"


@task(name="plan", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False)
def plan_task(job: dict[str, Any]) -> dict[str, Any]:
    """Read and validate the data (same errors as the library), then key every stage.

    Returns ``{"dataset", "hashes", "keys", "warnings", "phase1"}``; later tasks pin hashes and keys, so data edited
    mid-run fails loudly instead of mixing stages of two datasets. The data-quality warnings are logged
    by the library (once, here) and shown in the run summary; with the job's ``strict`` they fail this task.
    """
    plan = PipelineRun(PipelineJob.from_dict(job)).summary()
    run_logger().info("planned %s: %s", plan["dataset"], ", ".join(f"{s} {k[:12]}" for s, k in plan["keys"].items()))
    run_logger().info("phase 1: %s", plan["phase1"])
    if plan["warnings"]:
        run_logger().warning("%d data-quality warning(s), listed in the run summary: %s", len(plan["warnings"]),
                             "; ".join(w["check"] for w in plan["warnings"]))
    return plan

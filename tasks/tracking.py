"""Tracking task: report the finished run to the trackers its `report_to` names (MLflow, TensorBoard)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import run_logger

from setfit_core.pipeline import PipelineJob, report_run


@task(name="tracking", task_run_name="tracking [{plan[dataset]}] {plan[keys][model]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def tracking_task(job: dict[str, Any], plan: dict[str, Any], stages: dict[str, dict[str, Any]],
                  promotion: dict[str, Any] | None) -> list[str]:
    """Returns the trackers reported to."""
    try:
        names = report_run(PipelineJob.from_dict(job), plan["keys"], stages, promotion)
    except Exception as exc:
        exc.stage = "tracking"  # type: ignore[attr-defined]  # the failure artifact names where the run failed
        raise
    run_logger().info("reported to %s", ", ".join(names))
    return names

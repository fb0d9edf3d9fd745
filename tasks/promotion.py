"""Promotion task: after export, move the alias to the new model only if it scores at least as well."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import run_logger

from setfit_core.pipeline import PipelineJob
from setfit_core.pipeline.promotion import PromotionGate, promote_run


@task(name="promotion", task_run_name="promotion [{plan[dataset]}] {gate[alias]}", cache_policy=NO_CACHE,
      persist_result=False)
def promotion_task(job: dict[str, Any], plan: dict[str, Any], model: dict[str, Any],
                   evaluation: dict[str, Any] | None, gate: dict[str, Any], flow_run_id: str | None) -> dict[str, Any]:
    """Returns the `PromotionResult` as a dict: ``alias``, ``promoted``, ``reason``, ``model_uri``,
    ``previous_model_uri``, ``metric``, ``previous_metric``."""
    eval_metrics = (evaluation or {}).get("metrics", {}).get("eval")
    try:
        result = promote_run(PipelineJob.from_dict(job), PromotionGate(**gate), model["uri"], eval_metrics,
                             plan["hashes"].get("eval"), flow_run_id)
    except Exception as exc:
        exc.stage = "promotion"  # type: ignore[attr-defined]  # the failure artifact names where the run failed
        raise
    run_logger().info("alias %s: %s", result.alias, result.reason)
    return result.to_dict()

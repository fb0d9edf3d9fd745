"""Sweep tasks: plan every trial at once, then one task per trial (head + evaluation on the cached embeddings)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import parent_keys, pipeline_run, run_logger

from setfit_core.pipeline import PipelineJob
from setfit_core.pipeline.sweep import trial_plans


@task(name="plan-trials", cache_policy=NO_CACHE,
      persist_result=False)
def plan_trials_task(job: dict[str, Any], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plan per head variant (the data read and validated once); all share pairs, body and embeddings."""
    plans = trial_plans(PipelineJob.from_dict(job), variants)
    run_logger().info("planned %d trials of %s on body %s", len(plans), plans[0]["dataset"],
                      plans[0]["keys"]["body"][:12])
    return plans


@task(name="trial", task_run_name="trial [{plan[dataset]}] head {plan[keys][head]:.12}", cache_policy=NO_CACHE,
      persist_result=False)
def trial_task(job: dict[str, Any], plan: dict[str, Any], embeddings: dict[str, Any], body: dict[str, Any]
               ) -> dict[str, Any]:
    """The trial's head and evaluation stages, each reused when done. Returns ``{"head_params", "metrics",
    "stages": {"head", "evaluation"}}`` (full stage results: the flow exports the best from them)."""
    run = pipeline_run(job, plan)
    head = run.run_stage("head", parents=parent_keys(run, "head", embeddings, body)).to_dict()
    evaluation = run.run_stage("evaluation", parents=parent_keys(run, "evaluation", head, embeddings)).to_dict()
    metric = job["metric"]
    run_logger().info("trial %s: %s %.4f on eval (head %s, evaluation %s)", job["head_params"], metric,
                      evaluation["metrics"]["eval"][metric], head["status"], evaluation["status"])
    return {"head_params": job["head_params"], "metrics": evaluation["metrics"],
            "stages": {"head": head, "evaluation": evaluation}}

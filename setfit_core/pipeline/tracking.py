"""A pipeline run, reported to the trackers its `report_to` names (MLflow, TensorBoard), once it is done.

The stages train without trackers (`report_to` is in no stage key, and a reused stage trains nothing); this
reads what the run produced from the stage results instead, so a run that reused every stage is reported
like one that computed them: every `TrainingArguments` field, the job's model, data, head and stage keys as
params; phase 1's log rows at their steps, its train loss and the evaluation's numbers per split as metrics;
the promotion decision; and the model, saved self-contained, as the MLflow run's `model` artifact.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any

from setfit_core.modeling import SetFitModel
from setfit_core.pipeline.batch_predict import fetch_model
from setfit_core.pipeline.data_io import dataset_label
from setfit_core.pipeline.job import PipelineJob
from setfit_core.trackers import resolve_report_to

logger = logging.getLogger(__name__)


def report_run(job: PipelineJob, keys: Mapping[str, str], stages: Mapping[str, Mapping[str, Any]],
               promotion: Mapping[str, Any] | None = None) -> list[str]:
    """Report one pipeline run; `stages` are the stage results' plain dicts (`StageResult.to_dict()`), `keys`
    the plan's stage keys. Returns the trackers reported to (none: `report_to="none"`)."""
    names = resolve_report_to(job.training_args.report_to)
    if not names:
        return []
    from setfit_core.training.trackers import build_trackers  # transformers: only when reporting

    args = job.training_args
    if args.run_name is None:
        args = args.replace(run_name=f"{dataset_label(job.train_data)}-{keys['model'][:8]}")
    params = {**args.to_dict(), **_job_params(job, keys)}
    with fetch_model(stages["model"]["uri"], job.storage_options) as location:  # a local copy of an S3 model
        model = SetFitModel.from_pretrained(location, device="cpu")
    for tracker in build_trackers(names):
        tracker.begin(args, params)
        failed = True
        try:
            for row in stages["body"]["metrics"].get("log", []):
                tracker.log_metrics(_numbers({k: v for k, v in row.items() if k != "step"}), int(row["step"]))
            tracker.log_metrics(_run_metrics(stages, promotion), int(stages["body"]["metrics"].get("steps", 0)))
            failed = False
        finally:  # the model is saved self-contained (a model stage may only reference its body stage)
            tracker.close(None if failed else model, failed=failed)
    logger.info("reported the run to %s", ", ".join(names))
    return names


def _job_params(job: PipelineJob, keys: Mapping[str, str]) -> dict[str, Any]:
    return {"model": job.model, "train_data": job.train_data, "eval_data": job.eval_data, "test_data": job.test_data,
            "head_params": job.head_params, "use_differentiable_head": job.use_differentiable_head,
            "metric": job.metric, **{f"key_{stage}": key for stage, key in keys.items()}}


def _run_metrics(stages: Mapping[str, Mapping[str, Any]], promotion: Mapping[str, Any] | None) -> dict[str, float]:
    body = stages["body"]["metrics"]
    metrics = {"train_loss": body.get("train_loss"), "train_steps": body.get("steps"),
               "train_runtime": stages["body"].get("seconds")}
    for split, values in stages.get("evaluation", {}).get("metrics", {}).items():
        metrics.update({f"{split}_{k}": v for k, v in _flatten(values).items()})
    if promotion is not None and promotion.get("alias"):
        metrics["promoted"] = float(bool(promotion.get("promoted")))
    return _numbers(metrics)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested numbers (`per_class`, `probe`) as `a_b_c` names; lists (the confusion matrix) left out."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}

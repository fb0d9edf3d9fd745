"""`train_pipeline`: the SetFit training flow, one Prefect task per stage.

    plan -> pairs -> body -> embeddings -> head -> evaluation -> export -> promotion -> history [-> tracking]

The promotion task moves the alias `promote_to` (default ``production``) to the new model when it scores at
least as well as the alias's current model on this run's eval set (`setfit_core.pipeline.promotion`). The
history task records the run beside the alias and shows the last 30 runs of the dataset in the UI. With
`args["report_to"]` naming a tracker ("mlflow", "tensorboard", "all"), a last task reports the run there:
params, phase 1's log, the metrics and the model (`setfit_core.pipeline.tracking`), also when every stage was
reused.

With ``task_runner="dask"`` the embeddings stage runs as a subflow on a `DaskTaskRunner` (a local
cluster, or the scheduler at ``dask_address``): one task per shard, each writing a Parquet part under
the artifacts root, then one task publishes the stage. The stage key does not depend on sharding.

Every stage is reused when the artifact store holds a verified copy under its key (a content hash
of its config, parents, data and library versions), so a head-only change (e.g. ``head_params``)
reruns only head, evaluation and export. Run it with no server (Prefect's ephemeral API):

    python -m setfit_pipeline.flows.train train.parquet artifacts --eval-data test.parquet \
        --args '{"num_iterations": 20}'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any, Literal

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import wait
from prefect.runtime import deployment, flow_run
from setfit_pipeline.tasks.body import body_task
from setfit_pipeline.tasks.common import artifact_key, failure_artifact, run_logger
from setfit_pipeline.tasks.dask_runner import ScaleOut, TaskRunnerName
from setfit_pipeline.tasks.embedding_shards import (
    assemble_embeddings_task,
    embedding_shard_layout_task,
    embedding_shard_task,
    find_embeddings_task,
)
from setfit_pipeline.tasks.embeddings import embeddings_task
from setfit_pipeline.tasks.evaluation import evaluation_task
from setfit_pipeline.tasks.export import export_task
from setfit_pipeline.tasks.head import head_task
from setfit_pipeline.tasks.history import history_task
from setfit_pipeline.tasks.pairs import pairs_task
from setfit_pipeline.tasks.plan import plan_task
from setfit_pipeline.tasks.promotion import promotion_task
from setfit_pipeline.tasks.shards import remove_parts_task
from setfit_pipeline.tasks.tracking import tracking_task

from setfit_core.pipeline import DEFAULT_MODEL, PipelineJob, dataset_label
from setfit_core.pipeline.evaluation_stage import probe_comparisons
from setfit_core.pipeline.promotion import PromotionGate
from setfit_core.pipeline.report import metric_rows, promotion_markdown, summary_markdown
from setfit_core.trackers import resolve_report_to

Metric = Literal["accuracy", "f1", "precision", "recall", "matthews_correlation"]


def _flow_run_name() -> str:
    """``train-<dataset>-<8 hex of the parameters>``: runs of one dataset group, settings tell apart. A run of
    a deployment keeps the name it was created with: the one `prefect deployment run` printed."""
    if deployment.id:
        return flow_run.name
    params = flow_run.parameters
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return f"train-{dataset_label(params['train_data'])}-{digest[:8]}"


@flow(name="setfit-train", flow_run_name=_flow_run_name, persist_result=False)
def train_pipeline(
    train_data: str,
    artifacts_root: str,
    model: str = DEFAULT_MODEL,
    args: dict[str, Any] | None = None,
    head_params: dict[str, Any] | None = None,
    eval_data: str | None = None,
    test_data: str | None = None,
    column_mapping: dict[str, str] | None = None,
    use_differentiable_head: bool = False,
    metric: Metric = "accuracy",
    metric_kwargs: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
    self_contained: bool = False,
    export_onnx: bool = False,
    onnx_quantize: Literal["int8"] | None = None,
    task_runner: TaskRunnerName = "default",
    dask_address: str | None = None,
    dask_workers: int | None = None,
    shards: int | None = None,
    strict: bool = False,
    promote_to: str | None = "production",
    min_improvement: float = 0.0,
    allow_label_change: bool = False,
) -> dict[str, Any]:
    """Train a SetFit model in stages under `artifacts_root` (a directory or ``s3://bucket/prefix``).

    Data: a path or ``s3://`` URI to Parquet, CSV, JSONL or a `datasets` save_to_disk directory, with
    ``text`` and ``label`` columns (or `column_mapping`). `args`: `TrainingArguments` fields
    (e.g. ``{"num_iterations": 20, "seed": 0}``). `head_params`: LogisticRegression parameters, or
    SetFitHead ones with `use_differentiable_head`. `storage_options` go to s3fs (prefer AWS_* env
    vars for credentials: flow parameters are visible in the UI).

    The model stage references the body stage it was built from (``body_ref.json``): models that share a
    body store it once. `self_contained` copies the body's files into the model directory instead, for a
    model shipped as one directory. `export_onnx` also writes the body as an ONNX graph into the model stage
    (fp32, or int8 with ``onnx_quantize="int8"``; needs the onnx extra), which `predict_flow` with
    ``engine="onnx"`` runs: a rerun reuses it like any stage.

    Scaling out: ``task_runner="dask"`` shards the embeddings stage over a Dask cluster: a local one
    with `dask_workers` worker processes (default: one per core), or the scheduler at `dask_address`
    (e.g. ``"tcp://10.0.0.5:8786"``). `shards` defaults to the number of workers. Workers on other
    machines share files only through `artifacts_root`, so use an ``s3://`` root there.

    Data-quality findings (blank texts, classes with one example, ...) are warnings in the run summary and
    in ``result["warnings"]``; with ``strict=True`` the plan task fails on them instead, before stage 1.
    `strict` is part of no stage key.

    Promotion: after the model stage, the alias `promote_to` (``<artifacts_root>/aliases/<alias>.json``) moves to
    the new model if its metric on `eval_data` is at least the alias's current model's, scored again on the same
    eval data, plus `min_improvement`. No eval data, or a changed label set without `allow_label_change`: no
    promotion. ``result["promotion"]`` says what happened and why; ``promote_to=None`` turns the gate off.
    """
    try:
        scale = ScaleOut(task_runner, dask_address, dask_workers, shards).validate()
        job = PipelineJob.from_dict({
            "train_data": train_data, "artifacts_root": artifacts_root, "model": model, "args": args,
            "head_params": head_params, "eval_data": eval_data, "test_data": test_data,
            "column_mapping": column_mapping, "use_differentiable_head": use_differentiable_head, "metric": metric,
            "metric_kwargs": metric_kwargs, "storage_options": storage_options, "strict": strict,
            "self_contained": self_contained, "export_onnx": export_onnx, "onnx_quantize": onnx_quantize,
        }).validate().to_dict()  # argument errors surface here, before any task
        gate = None if promote_to is None else PromotionGate(promote_to, min_improvement, allow_label_change).validate()
        return _stages(job, scale, gate)
    except Exception as exc:
        # `stage` is set by PipelineRun.run_stage; the plan task reads and validates the data.
        failure_artifact(dataset_label(train_data), getattr(exc, "stage", "plan"), exc)
        raise


def _stages(job: dict[str, Any], scale: ScaleOut, gate: PromotionGate | None) -> dict[str, Any]:
    plan = plan_task(job)
    stages = {"pairs": pairs_task(job, plan)}
    stages["body"] = body_task(job, plan, stages["pairs"])
    stages["embeddings"] = _embeddings(job, plan, stages["body"], scale)
    stages["head"] = head_task(job, plan, stages["embeddings"], stages["body"])
    if "evaluation" in plan["keys"]:  # only with eval_data or test_data
        stages["evaluation"] = evaluation_task(job, plan, stages["head"], stages["embeddings"])
    stages["model"] = export_task(job, plan, stages["head"], stages["body"])
    if gate is None:
        promotion = {"alias": None, "promoted": False, "reason": "no promotion gate (promote_to=None)",
                     "model_uri": stages["model"]["uri"], "previous_model_uri": None, "metric": None,
                     "previous_metric": None}
    else:
        run_id = str(flow_run.id) if flow_run.id else None
        promotion = promotion_task(job, plan, stages["model"], stages.get("evaluation"), asdict(gate), run_id)
        history_task(job, plan, stages.get("evaluation"), promotion, run_id)
    if resolve_report_to(job["args"].get("report_to")):  # a team's MLflow / TensorBoard sees the run
        tracking_task(job, plan, stages, promotion)
    return _report(plan, stages, promotion)


def _embeddings(job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any], scale: ScaleOut) -> dict[str, Any]:
    """In this process, or sharded on Dask; a verified stage is reused either way (its key ignores sharding)."""
    if not scale.sharded:
        return embeddings_task(job, plan, body)
    reused = find_embeddings_task(job, plan, body)  # a stage that is done starts no cluster
    runner = scale.task_runner_instance()
    return reused or sharded_embeddings.with_options(task_runner=runner)(job, plan, body, scale.shards)


@flow(name="setfit-embeddings-sharded", flow_run_name="embeddings-{plan[dataset]}-{plan[keys][embeddings]:.8}",
      persist_result=False)
def sharded_embeddings(
    job: dict[str, Any], plan: dict[str, Any], body: dict[str, Any], shards: int | None = None
) -> dict[str, Any]:
    """The embeddings stage on this flow's task runner (Dask): one task per shard, then one assemble task."""
    work = embedding_shard_layout_task(job, plan, shards)
    try:
        parts = embedding_shard_task.map(unmapped(job), unmapped(plan), unmapped(body), work["shards"])
        wait(parts)  # all shards settle before `finally` removes their prefix (a late one would re-create it)
        # .result() raises a failed shard's error (failed futures would leave the assemble task NotReady).
        return assemble_embeddings_task(job, plan, body, parts.result())
    finally:  # published or failed, the parts are never needed again
        remove_parts_task(work["prefix"], job["storage_options"])


def _report(plan: dict[str, Any], stages: dict[str, dict[str, Any]], promotion: dict[str, Any]) -> dict[str, Any]:
    """UI artifacts rendered from the plan and the stage results, and the flow's return value."""
    dataset, warnings = plan["dataset"], plan["warnings"]
    metrics = stages["evaluation"]["metrics"] if "evaluation" in stages else {}
    model_uri = stages["model"]["uri"]
    below_probe = [c for c in probe_comparisons(metrics) if c.below]
    for comparison in below_probe:  # logged here too: a reused evaluation stage logs nothing itself
        run_logger().warning("%s", comparison.message())
    summary = summary_markdown(dataset, stages, model_uri, [w["message"] for w in warnings],
                               [c.message() for c in below_probe], plan["phase1"])
    create_markdown_artifact(summary + promotion_markdown(promotion), key=artifact_key("summary", dataset),
                             description="Stages of this run: computed or reused, seconds, key, URI; data warnings; "
                                         "metrics beside the frozen-probe baseline's; the promotion gate's decision")
    if metrics:
        create_table_artifact(metric_rows(metrics), key=artifact_key("metrics", dataset),
                              description="Accuracy, macro-F1 and per-class precision / recall / F1 per split")
    public = ("key", "status", "seconds", "uri")
    return {
        "stages": {stage: {k: result[k] for k in public} for stage, result in stages.items()},
        "metrics": metrics,
        "model_uri": model_uri,
        "promotion": promotion,
        "phase1": plan["phase1"],  # what phase 1 trained on: the fast preset's choice for this data
        # Data-quality findings, then splits where the model scored below the frozen-probe baseline.
        "warnings": [*warnings, *({"check": "below-probe", "split": c.split, "message": c.message()}
                                  for c in below_probe)],
    }


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run train_pipeline once (ephemeral Prefect API, no server).")
    parser.add_argument("train_data")
    parser.add_argument("artifacts_root")
    parser.add_argument("--eval-data")
    parser.add_argument("--test-data")
    parser.add_argument("--args", type=json.loads, default={}, help='TrainingArguments as JSON, e.g. \'{"seed": 0}\'')
    parser.add_argument("--head-params", type=json.loads, default={}, help='e.g. \'{"C": 0.5}\'')
    parser.add_argument("--task-runner", choices=["default", "dask"], default="default")
    parser.add_argument("--dask-address", help="an existing scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--dask-workers", type=int, help="workers of the local cluster (default: one per core)")
    parser.add_argument("--shards", type=int, help="default: one per worker")
    parser.add_argument("--strict", action="store_true", help="fail before stage 1 on any data-quality finding")
    cli = parser.parse_args()
    result = train_pipeline(train_data=cli.train_data, artifacts_root=cli.artifacts_root, eval_data=cli.eval_data,
                            test_data=cli.test_data, args=cli.args, head_params=cli.head_params,
                            task_runner=cli.task_runner, dask_address=cli.dask_address,
                            dask_workers=cli.dask_workers, shards=cli.shards, strict=cli.strict)
    print(json.dumps(result, indent=2))

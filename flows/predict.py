"""`predict_flow`: batch inference with a trained SetFit model, written to Parquet.

With ``task_runner="dask"`` the input is sharded over a Dask cluster: one task per shard writes a
Parquet part beside the output, one task merges them into the output (same file, schema and rows).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.futures import wait
from prefect.runtime import deployment, flow_run
from setfit_pipeline.tasks.batch_predict import predict_task
from setfit_pipeline.tasks.batch_predict_shards import (
    merge_predictions_task,
    predict_shard_layout_task,
    predict_shard_task,
)
from setfit_pipeline.tasks.common import artifact_key, failure_artifact
from setfit_pipeline.tasks.dask_runner import ScaleOut, TaskRunnerName
from setfit_pipeline.tasks.shards import remove_parts_task

from setfit_core.artifacts.aliases import AliasRecord, resolve_record_uri
from setfit_core.engine.inference import check_inference_dtype
from setfit_core.pipeline import dataset_label
from setfit_core.pipeline.batch_predict import check_engine, resolve_model_uri
from setfit_core.pipeline.report import prediction_markdown

Engine = Literal["torch", "onnx"]
InferenceDtype = Literal["float32", "float16", "bfloat16", "auto"]


def _flow_run_name() -> str:
    """``predict-<input>``; a run of a deployment keeps the name `prefect deployment run` printed."""
    if deployment.id:
        return flow_run.name
    return f"predict-{dataset_label(flow_run.parameters['input_data'])}"


@flow(name="setfit-predict", flow_run_name=_flow_run_name, persist_result=False)
def predict_flow(
    model: str,
    input_data: str,
    output_data: str,
    text_column: str = "text",
    batch_size: int | None = None,
    storage_options: dict[str, Any] | None = None,
    task_runner: TaskRunnerName = "default",
    dask_address: str | None = None,
    dask_workers: int | None = None,
    shards: int | None = None,
    engine: Engine = "torch",
    inference_dtype: InferenceDtype | None = None,
) -> dict[str, Any]:
    """Predict every text of `input_data` (Parquet / CSV / JSONL, local or ``s3://``) into `output_data`.

    `model`: a model directory (e.g. the ``model_uri`` a `train_pipeline` run returns, local or S3; a
    pipeline model stage is verified against its manifest first), or an alias record,
    ``<artifacts_root>/aliases/<alias>.json``: the model the alias points to when this run starts. Output
    columns: ``text``, ``predicted_label``, ``predicted_id``, ``probabilities``. The result and the run's summary
    artifact name the model used (``model_uri``) and, through an alias, the record's version.

    ``task_runner="dask"`` shards the rows over a local Dask cluster of `dask_workers` processes
    (default: one per core) or the scheduler at `dask_address`; `shards` defaults to one per worker.

    ``engine="onnx"`` runs the model's ONNX export through onnxruntime (a model trained with
    ``export_onnx=true``, e.g. the one nightly-retrain promotes, or a directory `SetFitModel.export_onnx`
    wrote); a model without one is an error before any row is read.

    On a GPU worker, ``inference_dtype="float16"`` / ``"bfloat16"`` runs the torch body in half precision
    (faster; a few borderline predictions may differ from float32's), refused on a CPU worker; ``"auto"`` is
    half precision on a GPU and float32 on a CPU. `batch_size` None: 256 texts a batch on a GPU, 64 on a CPU.
    """
    scale = ScaleOut(task_runner, dask_address, dask_workers, shards).validate()  # before any work
    check_engine(engine)
    check_inference_dtype(inference_dtype)
    try:
        # Resolved once, now: a promotion while this run predicts does not mix two models in one output.
        alias = resolve_record_uri(model, storage_options)
        model = resolve_model_uri(alias.model_uri if alias else model, storage_options)  # refuses other stages
        if not scale.sharded:
            result = predict_task(model, input_data, output_data, text_column, batch_size, storage_options, engine,
                                  inference_dtype)
        else:
            result = sharded_predict.with_options(task_runner=scale.task_runner_instance())(
                model, input_data, output_data, text_column, batch_size, storage_options, scale.shards, engine,
                inference_dtype)
    except Exception as exc:
        failure_artifact(dataset_label(input_data), "predict", exc)
        raise
    return _report(input_data, model, alias, result)


def _report(input_data: str, model: str, alias: AliasRecord | None, result: dict[str, Any]) -> dict[str, Any]:
    """The summary artifact (which model predicted, through which alias version) and the flow's return value."""
    via = None if alias is None else {"alias": alias.alias, "version": alias.version, "time": alias.time,
                                      "flow_run_id": alias.flow_run_id}
    result = {**result, "model_uri": model, "via_alias": via}
    create_markdown_artifact(prediction_markdown(input_data, result), key=artifact_key("summary", dataset_label(
        input_data)), description="Which model predicted (and through which alias record), rows, output")
    return result


@flow(name="setfit-predict-sharded", flow_run_name=_flow_run_name, persist_result=False)
def sharded_predict(
    model: str,
    input_data: str,
    output_data: str,
    text_column: str = "text",
    batch_size: int | None = None,
    storage_options: dict[str, Any] | None = None,
    shards: int | None = None,
    engine: Engine = "torch",
    inference_dtype: InferenceDtype | None = None,
) -> dict[str, Any]:
    """`predict_flow` on this flow's task runner (Dask): one task per shard, then one merge task."""
    work = predict_shard_layout_task(input_data, output_data, shards, text_column, storage_options)
    try:
        parts = predict_shard_task.map(unmapped(model), unmapped(input_data), work["shards"],
                                       unmapped(text_column), unmapped(batch_size), unmapped(storage_options),
                                       unmapped(engine), unmapped(inference_dtype))
        wait(parts)  # all shards settle before `finally` removes their prefix (a late one would re-create it)
        # .result() raises a failed shard's error; handing failed futures to the merge task would only
        # leave it NotReady and let this flow end "Completed" without output.
        return merge_predictions_task(parts.result(), output_data, model, storage_options)
    finally:  # merged or failed, the parts are never needed again
        remove_parts_task(work["prefix"], storage_options)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Run predict_flow once (ephemeral Prefect API, no server).")
    parser.add_argument("model", help="a model directory, e.g. the model_uri train_pipeline returned")
    parser.add_argument("input_data")
    parser.add_argument("output_data")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--task-runner", choices=["default", "dask"], default="default")
    parser.add_argument("--dask-address", help="an existing scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--dask-workers", type=int, help="workers of the local cluster (default: one per core)")
    parser.add_argument("--shards", type=int, help="default: one per worker")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--inference-dtype", choices=["float32", "float16", "bfloat16", "auto"], default=None)
    cli = parser.parse_args()
    result = predict_flow(cli.model, cli.input_data, cli.output_data, cli.text_column, task_runner=cli.task_runner,
                          dask_address=cli.dask_address, dask_workers=cli.dask_workers, shards=cli.shards,
                          engine=cli.engine, inference_dtype=cli.inference_dtype)
    print(json.dumps(result, indent=2))

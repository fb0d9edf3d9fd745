"""Batch prediction task: texts in, a Parquet of predicted labels and probabilities out."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import in_run, location_artifact, run_logger

from setfit_core.pipeline import predict_to_parquet


@task(name="predict", task_run_name="predict [{input_data}]", cache_policy=NO_CACHE, persist_result=False)
def predict_task(
    model: str,
    input_data: str,
    output_data: str,
    text_column: str = "text",
    batch_size: int | None = None,
    storage_options: dict[str, Any] | None = None,
    engine: str = "torch",
    inference_dtype: str | None = None,
) -> dict[str, Any]:
    result = predict_to_parquet(model, input_data, output_data, text_column=text_column, batch_size=batch_size,
                                storage_options=storage_options, engine=engine, inference_dtype=inference_dtype)
    output = result["output_data"]  # a directory given as output_data holds predictions.parquet
    run_logger().info("predicted %d rows in %.2f s (%s) -> %s", result["rows"], result["seconds"], engine, output)
    if in_run():
        location_artifact(output, f"predictions ({result['rows']} rows)", None, storage_options, directory=False,
                          description=f"model {model}")
    return result

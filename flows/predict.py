"""`predict_flow`: batch inference with a trained SetFit model, written to Parquet."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from setfit_core.pipeline import dataset_label
from tasks.predict import predict_task


def _flow_run_name() -> str:
    return f"predict-{dataset_label(flow_run.parameters['input_data'])}"


@flow(name="setfit-predict", flow_run_name=_flow_run_name, persist_result=False)
def predict_flow(
    model: str,
    input_data: str,
    output_data: str,
    text_column: str = "text",
    batch_size: int = 64,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predict every text of `input_data` (Parquet / CSV / JSONL, local or ``s3://``) into `output_data`.

    `model`: a model directory (e.g. the ``model_uri`` a `train_pipeline` run returns, local or S3; a
    pipeline model stage is verified against its manifest first). Output columns: ``text``,
    ``predicted_label``, ``predicted_id``, ``probabilities``.
    """
    return predict_task(model, input_data, output_data, text_column, batch_size, storage_options)


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Run predict_flow once (ephemeral Prefect API, no server).")
    parser.add_argument("model", help="a model directory, e.g. the model_uri train_pipeline returned")
    parser.add_argument("input_data")
    parser.add_argument("output_data")
    parser.add_argument("--text-column", default="text")
    cli = parser.parse_args()
    print(json.dumps(predict_flow(cli.model, cli.input_data, cli.output_data, cli.text_column), indent=2))

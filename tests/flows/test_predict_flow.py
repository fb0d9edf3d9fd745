"""`predict_flow` on a Parquet input, with a model the training flow exported."""

from __future__ import annotations

import pandas as pd
import pytest
from setfit_pipeline.flows.cli import main
from setfit_pipeline.flows.predict import predict_flow
from setfit_pipeline.flows.train import train_pipeline

from setfit_core import SetFitModel
from tests.conftest import TINY_SPLITS, cpu_only
from tests.flows.test_train_flow import ARGS


def test_batch_prediction_to_parquet(tiny_model_dir, tiny_splits, tmp_path):
    trained = train_pipeline(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "artifacts"),
                             model=tiny_model_dir, args=ARGS)
    assert "evaluation" not in trained["stages"] and trained["metrics"] == {}  # no eval/test data given
    out = tmp_path / "predictions" / "test.parquet"
    result = predict_flow(trained["model_uri"], tiny_splits["test"], str(out))
    assert result["rows"] == len(TINY_SPLITS["test"]["text"])
    table = pd.read_parquet(out)
    assert list(table.columns) == ["text", "predicted_label", "predicted_id", "probabilities"]
    model = SetFitModel.from_pretrained(trained["model_uri"], device="cpu")
    assert table["predicted_label"].tolist() == list(model.predict(TINY_SPLITS["test"]["text"]))


def _onnx_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


needs_onnx = pytest.mark.skipif(not _onnx_available(), reason="the onnx extra is not installed: pip install "
                                "'setfit-pipeline[onnx]'")


@needs_onnx
@pytest.mark.slow
def test_engine_onnx_predicts_with_the_export_the_training_flow_made_and_a_rerun_reuses(tiny_model_dir, tiny_splits,
                                                                                        tmp_path):
    root = str(tmp_path / "artifacts")
    trained = train_pipeline(train_data=tiny_splits["train"], eval_data=tiny_splits["eval"], artifacts_root=root,
                             model=tiny_model_dir, args=ARGS, export_onnx=True, onnx_quantize="int8")
    again = train_pipeline(train_data=tiny_splits["train"], eval_data=tiny_splits["eval"], artifacts_root=root,
                           model=tiny_model_dir, args=ARGS, export_onnx=True, onnx_quantize="int8")
    assert {s["status"] for s in again["stages"].values()} == {"reused"}
    assert again["model_uri"] == trained["model_uri"]
    # Through the alias the nightly run promoted, as the batch-predict deployment reads it.
    out = tmp_path / "predictions.parquet"
    result = predict_flow(f"{root}/aliases/production.json", tiny_splits["test"], str(out), engine="onnx")
    assert result["engine"] == "onnx" and result["model_uri"] == trained["model_uri"]
    model = SetFitModel.from_pretrained(trained["model_uri"], backend="onnx")
    assert pd.read_parquet(out)["predicted_label"].tolist() == list(model.predict(TINY_SPLITS["test"]["text"]))


@needs_onnx
@pytest.mark.slow
def test_engine_onnx_on_s3(tiny_model_dir, tiny_splits, s3_root):
    import s3fs

    trained = train_pipeline(train_data=tiny_splits["train"], artifacts_root=s3_root, model=tiny_model_dir,
                             args=ARGS, export_onnx=True)
    output = f"{s3_root}/predictions/test.parquet"
    result = predict_flow(trained["model_uri"], tiny_splits["test"], output, engine="onnx")
    assert result["rows"] == len(TINY_SPLITS["test"]["text"]) and result["engine"] == "onnx"
    with s3fs.S3FileSystem().open(output, "rb") as f:
        onnx_labels = pd.read_parquet(f)["predicted_label"].tolist()
    torch_result = predict_flow(trained["model_uri"], tiny_splits["test"], f"{s3_root}/predictions/torch.parquet")
    with s3fs.S3FileSystem().open(torch_result["output_data"], "rb") as f:
        assert onnx_labels == pd.read_parquet(f)["predicted_label"].tolist()


def test_engine_onnx_without_an_export_fails_before_reading_rows(tiny_model_dir, tiny_splits, tmp_path):
    trained = train_pipeline(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "artifacts"),
                             model=tiny_model_dir, args=ARGS)
    with pytest.raises(ValueError, match="has no ONNX export, so engine='onnx' cannot run it"):
        predict_flow(trained["model_uri"], tiny_splits["test"], str(tmp_path / "p.parquet"), engine="onnx")
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match=r"engine: Input should be 'torch' or 'onnx'"):  # the Literal type
        predict_flow(trained["model_uri"], tiny_splits["test"], str(tmp_path / "p.parquet"), engine="gpu")
    assert not (tmp_path / "p.parquet").exists()


# ---- inference_dtype: through the flow, the tasks and the CLI -----------------------------------------------


@cpu_only
def test_inference_dtype_reaches_the_model_and_is_checked_before_a_run(saved_model, tiny_splits, tmp_path):
    from prefect.exceptions import ParameterTypeError

    out = tmp_path / "p.parquet"
    with pytest.raises(ValueError, match=r"inference_dtype='float16' is for GPU prediction .* device 'cpu'"):
        predict_flow(saved_model, tiny_splits["test"], str(out), inference_dtype="float16")
    with pytest.raises(ParameterTypeError, match=r"inference_dtype: Input should be 'float32', 'float16', 'bfloat16' "
                                                 r"or 'auto'"):
        predict_flow(saved_model, tiny_splits["test"], str(out), inference_dtype="fp16")
    assert not out.exists()


@cpu_only
@pytest.mark.parametrize("task", ["predict_task", "predict_shard_task"])
def test_the_prediction_tasks_pass_inference_dtype_on(saved_model, tiny_splits, tmp_path, task):
    from setfit_pipeline.tasks import batch_predict, batch_predict_shards

    with pytest.raises(ValueError, match=r"inference_dtype='bfloat16' is for GPU prediction"):
        if task == "predict_task":
            batch_predict.predict_task.fn(saved_model, tiny_splits["test"], str(tmp_path / "p.parquet"),
                                          inference_dtype="bfloat16")
        else:
            shard = {"index": 0, "batches": [0, 1], "part": str(tmp_path / "part-0.parquet")}
            batch_predict_shards.predict_shard_task.fn(saved_model, tiny_splits["test"], shard,
                                                       inference_dtype="bfloat16")


def test_the_cli_hands_inference_dtype_and_batch_size_to_the_flow(saved_model, tiny_splits, tmp_path, monkeypatch,
                                                                  capsys):
    from setfit_pipeline.flows import predict as predict_module

    seen = {}

    def fake_flow(model, input_data, output_data, **kwargs):
        seen.update(kwargs)
        return {"rows": 6, "seconds": 0.1, "output_data": output_data, "model_uri": model, "via_alias": None}

    monkeypatch.setattr(predict_module, "predict_flow", fake_flow)
    out = str(tmp_path / "p.parquet")
    assert main(["predict", saved_model, tiny_splits["test"], out, "--inference-dtype", "bfloat16",
                 "--batch-size", "512"]) == 0
    assert (seen["inference_dtype"], seen["batch_size"]) == ("bfloat16", 512)
    assert main(["predict", saved_model, tiny_splits["test"], out]) == 0
    assert (seen["inference_dtype"], seen["batch_size"]) == (None, None)  # float32; 256 on a GPU, 64 on a CPU
    assert "predicted 6 rows" in capsys.readouterr().out


def test_the_batch_predict_deployment_parameters_fit_the_flow():
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "deployments" / "prefect.yaml").read_text())
    params = next(d for d in spec["deployments"] if d["name"] == "batch-predict")["parameters"]
    assert params["inference_dtype"] is None  # float32 unless a GPU worker's deployment asks for half precision
    validated = predict_flow.validate_parameters({**params, "inference_dtype": "auto"})
    assert validated["inference_dtype"] == "auto" and validated["engine"] == "torch"

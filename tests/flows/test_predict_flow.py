"""`predict_flow` on a Parquet input, with a model the training flow exported."""

from __future__ import annotations

import pandas as pd
import pytest
from setfit_pipeline.flows.predict import predict_flow
from setfit_pipeline.flows.train import train_pipeline

from setfit_core import SetFitModel
from tests.conftest import TINY_SPLITS
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

"""`predict_flow` on a Parquet input, with a model the training flow exported."""

from __future__ import annotations

import pandas as pd
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

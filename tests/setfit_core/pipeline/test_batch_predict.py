from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from setfit_core import SetFitModel
from setfit_core.pipeline import PipelineRun, predict_to_parquet
from tests.conftest import TINY_SPLITS


@pytest.fixture
def model_uri(make_job) -> str:
    return PipelineRun(make_job()).run_all()["model"].uri


def test_predictions_match_the_model(model_uri, tiny_splits, tmp_path):
    out = tmp_path / "out" / "predictions.parquet"
    result = predict_to_parquet(model_uri, tiny_splits["test"], str(out), rows_per_group=4)
    assert result["rows"] == 6 and pq.ParquetFile(out).num_row_groups == 2
    table = pd.read_parquet(out)
    assert list(table.columns) == ["text", "predicted_label", "predicted_id", "probabilities"]
    model = SetFitModel.from_pretrained(model_uri, device="cpu")
    texts = TINY_SPLITS["test"]["text"]
    assert table["text"].tolist() == texts
    assert table["predicted_label"].tolist() == list(model.predict(texts))
    probs = np.stack(table["probabilities"].to_numpy())
    assert np.allclose(probs, model.predict_proba(texts, as_numpy=True), atol=1e-6)
    assert [model.labels[i] for i in table["predicted_id"]] == table["predicted_label"].tolist()


def test_csv_input_and_text_column(model_uri, tmp_path):
    pd.DataFrame({"review": ["good movie", "awful film"]}).to_csv(tmp_path / "in.csv", index=False)
    result = predict_to_parquet(model_uri, str(tmp_path / "in.csv"), str(tmp_path / "p.parquet"), text_column="review")
    assert result["rows"] == 2


def test_bad_input_leaves_no_output(model_uri, tmp_path):
    pd.DataFrame({"text": ["good movie", None]}).to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "p.parquet"
    with pytest.raises(ValueError, match=r"row 1 is None; every text must be a string"):
        predict_to_parquet(model_uri, str(tmp_path / "in.parquet"), str(out))
    assert list(tmp_path.glob("p.parquet*")) == []
    with pytest.raises(ValueError, match=r"has no column 'body'; found \['text'\]"):
        predict_to_parquet(model_uri, str(tmp_path / "in.parquet"), str(out), text_column="body")

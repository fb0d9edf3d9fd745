from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from setfit_core import SetFitModel
from setfit_core.pipeline import PipelineRun, predict_to_parquet
from tests.conftest import TINY_SPLITS, cpu_only


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


# ---- where the output goes: one file, exactly one row per input, never a temp file left behind -----------


def _rows_read_back(path) -> int:
    """Rows a reader gets from `path`: a Parquet file, or every Parquet file of a directory."""
    return pq.read_table(str(path)).num_rows


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name)


def test_a_file_output_twice_holds_one_row_per_input(model_uri, tiny_splits, tmp_path):
    out = tmp_path / "p.parquet"
    for _ in range(2):
        assert predict_to_parquet(model_uri, tiny_splits["test"], str(out))["output_data"] == str(out)
    assert _rows_read_back(out) == 6 and _leftovers(tmp_path) == []


@pytest.mark.parametrize("trailing_slash", [False, True])
def test_a_directory_output_gets_a_named_file_inside(model_uri, tiny_splits, tmp_path, trailing_slash):
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    given = str(outdir) + ("/" if trailing_slash else "")
    for _ in range(2):  # the bug this guards: each run moved its temp file into the directory
        result = predict_to_parquet(model_uri, tiny_splits["test"], given)
        assert result["output_data"] == str(outdir / "predictions.parquet") and result["rows"] == 6
    assert sorted(p.name for p in outdir.iterdir()) == ["predictions.parquet"]
    assert _rows_read_back(outdir) == 6  # reading the directory back: one row per input


def test_a_new_directory_named_with_a_slash_is_created(model_uri, tiny_splits, tmp_path):
    result = predict_to_parquet(model_uri, tiny_splits["test"], f"{tmp_path}/new/")
    assert result["output_data"] == f"{tmp_path}/new/predictions.parquet" and _rows_read_back(tmp_path / "new") == 6


def test_an_interrupted_write_keeps_the_previous_output_and_leaves_no_temp_file(model_uri, tiny_splits, tmp_path):
    out = tmp_path / "p.parquet"
    predict_to_parquet(model_uri, tiny_splits["test"], str(out))
    before = out.read_bytes()
    # The second batch holds a bad row: the write stops halfway, after one row group went out.
    pd.DataFrame({"text": ["good movie", "awful film", "fine", None]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"row 3 is None"):
        predict_to_parquet(model_uri, str(tmp_path / "bad.parquet"), str(out), rows_per_group=2)
    assert out.read_bytes() == before and _leftovers(tmp_path) == []


def test_an_s3_prefix_output_gets_a_named_file_inside(model_uri, tiny_splits, s3_root):
    import s3fs

    fs = s3fs.S3FileSystem()
    for given in (f"{s3_root}/out/", f"{s3_root}/out"):  # the second names a prefix that now has objects
        result = predict_to_parquet(model_uri, tiny_splits["test"], given)
        assert result["output_data"] == f"{s3_root}/out/predictions.parquet"
    assert fs.ls(f"{s3_root}/out") == [f"{s3_root.removeprefix('s3://')}/out/predictions.parquet"]
    with fs.open(f"{s3_root}/out/predictions.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 6


def test_an_interrupted_s3_upload_leaves_no_object(model_uri, tiny_splits, s3_root, tmp_path):
    import s3fs

    pd.DataFrame({"text": ["good movie", "awful film", "fine", None]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"row 3 is None"):
        predict_to_parquet(model_uri, str(tmp_path / "bad.parquet"), f"{s3_root}/p.parquet", rows_per_group=2)
    assert not s3fs.S3FileSystem().exists(f"{s3_root}/p.parquet")


# ---- precision and batch size by device --------------------------------------------------------------------


@cpu_only
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_on_a_cpu_fails_before_any_output(saved_model, tiny_splits, tmp_path, dtype):
    from setfit_core.pipeline.batch_predict_shards import predict_shard

    out = tmp_path / "p.parquet"
    with pytest.raises(ValueError, match=rf"inference_dtype='{dtype}' is for GPU prediction .* device 'cpu'"):
        predict_to_parquet(saved_model, tiny_splits["test"], str(out), inference_dtype=dtype)
    with pytest.raises(ValueError, match=rf"inference_dtype='{dtype}' is for GPU prediction"):
        predict_shard(saved_model, tiny_splits["test"], str(tmp_path / "part-0.parquet"), (0, 1),
                      inference_dtype=dtype)
    assert list(tmp_path.glob("p*.parquet*")) == []
    with pytest.raises(ValueError, match=r"'inference_dtype' must be None \(float32\) or one of"):
        predict_to_parquet(saved_model, tiny_splits["test"], str(out), inference_dtype="fp16")


@cpu_only
def test_auto_on_a_cpu_predicts_in_float32_at_the_cpu_batch_size(saved_model, tiny_splits, tmp_path, monkeypatch):
    from setfit_core.pipeline import batch_predict

    sizes, real = [], batch_predict.predictions

    def predictions(model, texts, batch_size):
        sizes.append(batch_size)
        return real(model, texts, batch_size)

    monkeypatch.setattr(batch_predict, "predictions", predictions)
    predict_to_parquet(saved_model, tiny_splits["test"], str(tmp_path / "a.parquet"))
    predict_to_parquet(saved_model, tiny_splits["test"], str(tmp_path / "b.parquet"), inference_dtype="auto")
    assert sizes == [batch_predict.CPU_BATCH_SIZE] * 2 == [64, 64]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))

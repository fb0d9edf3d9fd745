"""The model stage's ONNX export (`PipelineJob.export_onnx`) and batch prediction with engine="onnx", without
Prefect, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from setfit_core import SetFitModel
from setfit_core.model_io.onnx_format import ONNX_FILES
from setfit_core.pipeline import PipelineJob, PipelineRun, predict_to_parquet
from tests.conftest import TINY_SPLITS

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'setfit-pipeline[onnx]'")


def keys(job) -> dict[str, str]:
    return {stage: spec.key for stage, spec in PipelineRun(job).plan.items()}


def test_export_onnx_changes_only_the_model_key(make_job):
    plain, fp32, int8 = keys(make_job()), keys(make_job(export_onnx=True)), keys(make_job(export_onnx=True,
                                                                                           onnx_quantize="int8"))
    assert {s: k for s, k in fp32.items() if s != "model"} == {s: k for s, k in plain.items() if s != "model"}
    assert len({plain["model"], fp32["model"], int8["model"]}) == 3


@pytest.mark.parametrize("self_contained", [False, True])
def test_the_model_stage_holds_the_graph_and_is_reused(make_job, tiny_splits, tmp_path, self_contained):
    job = make_job(export_onnx=True, onnx_quantize="int8", self_contained=self_contained)
    first = PipelineRun(job).run_all()
    model_dir = Path(first["model"].uri)
    entry = json.loads((model_dir / "config_setfit.json").read_text())["onnx"]
    assert entry["quantize"] == "int8" and (model_dir / ONNX_FILES["int8"]).is_file()
    assert (model_dir / ONNX_FILES["int8"]).as_posix().endswith(entry["file"])
    assert ONNX_FILES["int8"] in {f.path for f in first["model"].manifest.files}  # verified like every file
    assert {"onnx", "onnxruntime", "torch"} <= set(first["model"].manifest.versions)
    card = (model_dir / "README.md").read_text(encoding="utf-8")  # the SetFit card, not a copied body's
    assert "library_name: setfit" in card and "feature-extraction" not in card
    assert f"(`{entry['file']}`)" in card and 'backend="onnx"' in card
    again = PipelineRun(job).run_all()
    assert {r.status for r in again.values()} == {"reused"} and again["model"].uri == first["model"].uri

    torch_model = SetFitModel.from_pretrained(str(model_dir), device="cpu")
    onnx_model = SetFitModel.from_pretrained(str(model_dir), backend="onnx")
    texts = TINY_SPLITS["test"]["text"]
    assert list(onnx_model.predict(texts)) == list(torch_model.predict(texts))


def test_batch_prediction_with_engine_onnx_matches_torch(make_job, tiny_splits, tmp_path):
    model_uri = PipelineRun(make_job(export_onnx=True)).run_all()["model"].uri
    outputs = {}
    for engine in ("torch", "onnx"):
        result = predict_to_parquet(model_uri, tiny_splits["test"], str(tmp_path / f"{engine}.parquet"),
                                    engine=engine)
        assert result["engine"] == engine
        outputs[engine] = pd.read_parquet(result["output_data"])
    assert outputs["onnx"]["predicted_label"].tolist() == outputs["torch"]["predicted_label"].tolist()
    for ours, theirs in zip(outputs["onnx"]["probabilities"], outputs["torch"]["probabilities"], strict=True):
        assert abs(ours - theirs).max() < 1e-4


def test_engine_onnx_on_a_model_without_an_export_says_how_to_get_one(make_job, tiny_splits, tmp_path):
    model_uri = PipelineRun(make_job()).run_all()["model"].uri
    with pytest.raises(ValueError, match=r"has no ONNX export, so engine='onnx' cannot run it: train it with "
                                         r"export_onnx=true"):
        predict_to_parquet(model_uri, tiny_splits["test"], str(tmp_path / "p.parquet"), engine="onnx")
    assert not (tmp_path / "p.parquet").exists()
    with pytest.raises(ValueError, match=r"'engine' must be one of \['torch', 'onnx'\]; got 'tensorrt'"):
        predict_to_parquet(model_uri, tiny_splits["test"], str(tmp_path / "p.parquet"), engine="tensorrt")


@pytest.mark.parametrize(("changes", "match"), [
    ({"onnx_quantize": "int8"}, r"onnx_quantize='int8' applies to the ONNX export; set export_onnx=true"),
    ({"export_onnx": True, "onnx_quantize": "int4"}, r"'onnx_quantize' must be null \(fp32\) or 'int8'; got 'int4'"),
    ({"export_onnx": "yes"}, r"'export_onnx' must be true or false; got 'yes'"),
])
def test_bad_onnx_settings_fail_before_any_stage(tiny_splits, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        PipelineJob(train_data=tiny_splits["train"], artifacts_root=str(tmp_path / "a"), **changes).validate()
    assert not (tmp_path / "a").exists()

"""The model stage references its body stage (``body_ref.json``) unless ``self_contained``: what it holds, how
it loads (locally, from S3, copied elsewhere), what two models sharing a body cost, and a missing body."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest

from setfit_core import SetFitModel
from setfit_core.artifacts import ArtifactStore, sha256_file
from setfit_core.model_io.body_ref import BODY_REF_FILE
from setfit_core.pipeline import PipelineRun, predict_to_parquet
from setfit_core.pipeline.batch_predict import fetch_model
from tests.conftest import TINY_SPLITS

TEXTS = TINY_SPLITS["test"]["text"]
BODY_WEIGHTS = "model.safetensors"


def run(job, store: ArtifactStore | None = None):
    return PipelineRun(job, store=store).run_all()


def probabilities(location: str) -> np.ndarray:
    return SetFitModel.from_pretrained(location, device="cpu").predict_proba(TEXTS, as_numpy=True)


def files(directory: str | Path) -> set[str]:
    root = Path(directory)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def root_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_the_model_stage_references_its_body_and_predicts_like_a_self_contained_one(make_job):
    referencing = run(make_job())
    contained = run(make_job(self_contained=True))
    assert {s for s in referencing if referencing[s].key != contained[s].key} == {"model"}, "only the model's key"
    assert contained["model"].status == "computed" and contained["body"].status == "reused"

    body_files = files(referencing["body"].uri) - {"manifest.json"}
    assert files(referencing["model"].uri) == files(referencing["head"].uri) | {BODY_REF_FILE, "README.md"}
    # README.md: the model's own card in both layouts (a self-contained model's replaces the body's).
    assert not body_files - {"README.md"} & files(referencing["model"].uri), "no body weights or config in the model"
    assert files(contained["model"].uri) == (body_files | files(referencing["head"].uri))
    assert all("library_name: setfit" in (Path(r["model"].uri) / "README.md").read_text() for r in (referencing,
                                                                                                    contained))
    ref = json.loads((Path(referencing["model"].uri) / BODY_REF_FILE).read_text())
    body_key = referencing["body"].key
    assert ref == {"format_version": 1, "stage": "body", "key": body_key, "path": f"../../body/{body_key}"}
    assert referencing["model"].manifest.metrics["body_ref"] == {"stage": "body", "key": body_key}
    assert contained["model"].manifest.metrics["body_ref"] is None
    assert referencing["model"].manifest.config["self_contained"] is False

    np.testing.assert_array_equal(probabilities(referencing["model"].uri), probabilities(contained["model"].uri))


def test_two_models_sharing_a_body_store_its_weights_once(make_job, tmp_path):
    roots = {"referencing": tmp_path / "referencing", "self_contained": tmp_path / "self_contained"}
    for name, root in roots.items():
        for head_params in ({}, {"C": 0.5}):
            results = run(make_job(artifacts_root=str(root), head_params=head_params,
                                   self_contained=name == "self_contained"))
        weights = sha256_file(Path(results["body"].uri) / BODY_WEIGHTS)
        copies = [p for p in root.rglob(BODY_WEIGHTS) if sha256_file(p) == weights]
        assert len(copies) == (1 if name == "referencing" else 3), name
    # The body's README.md (its sentence-transformers card) is replaced by the model's card in either layout.
    body_bytes = sum(entry.size for entry in results["body"].manifest.files if entry.path != "README.md")
    saved = root_size(roots["self_contained"]) - root_size(roots["referencing"])
    # Each self-contained model holds a copy of the body; each referencing one 1-2 KiB of head files instead.
    assert saved >= 2 * body_bytes - 2 * 1024, (saved, body_bytes)


def test_an_s3_model_loads_through_fetch_model_with_its_body(make_job, s3_root, tmp_path, cache_home):
    store = ArtifactStore(s3_root, cache_dir=tmp_path / "training-cache")
    results = run(make_job(artifacts_root=s3_root), store)
    expected = probabilities(str(store.local_path("model", results["model"].key)))

    body_cache = None
    with fetch_model(results["model"].uri) as location:  # a fresh cache (XDG_CACHE_HOME): all from S3
        assert location.startswith(str(cache_home))
        body_cache = (Path(location) / "../../body" / results["body"].key).resolve()
        assert (body_cache / BODY_WEIGHTS).is_file() and not (Path(location) / BODY_WEIGHTS).exists()
        np.testing.assert_array_equal(probabilities(location), expected)
    output = f"{s3_root}/predictions.parquet"
    assert predict_to_parquet(results["model"].uri, _texts_file(tmp_path), output)["rows"] == len(TEXTS)

    # A plain S3 directory (no manifests) laid out as <prefix>/model/<x> beside <prefix>/body/<key> loads too.
    fs, base = fsspec.core.url_to_fs(s3_root)
    fs.put(f"{store.local_path('model', results['model'].key)}/", f"{base}/shipped/model/m/", recursive=True)
    fs.put(f"{body_cache}/", f"{base}/shipped/body/{results['body'].key}/", recursive=True)
    fs.rm(f"{base}/shipped/model/m/manifest.json")
    with fetch_model(f"{s3_root}/shipped/model/m") as location:
        np.testing.assert_array_equal(probabilities(location), expected)


def _texts_file(tmp_path: Path) -> str:
    import pandas as pd

    path = tmp_path / "texts.parquet"
    pd.DataFrame({"text": TEXTS}).to_parquet(path, index=False)
    return str(path)


def test_a_self_contained_model_loads_after_being_copied_elsewhere_alone(make_job, tmp_path):
    results = run(make_job(self_contained=True))
    shipped = tmp_path / "shipped"
    shutil.copytree(results["model"].uri, shipped)
    expected = probabilities(results["model"].uri)
    shutil.rmtree(tmp_path / "artifacts")  # nothing of the root is left to lean on
    np.testing.assert_array_equal(probabilities(str(shipped)), expected)


def test_a_referencing_model_copied_alone_names_the_missing_body_and_the_fix(make_job, tmp_path):
    results = run(make_job())
    alone = tmp_path / "elsewhere" / "model"
    shutil.copytree(results["model"].uri, alone)
    missing = (alone / "../../body" / results["body"].key).resolve()
    with pytest.raises(FileNotFoundError) as raised:
        SetFitModel.from_pretrained(str(alone), device="cpu")
    message = str(raised.value)
    assert f"takes its body from body stage {results['body'].key[:12]} at {str(missing)!r}" in message
    assert "self_contained=True" in message and "--self-contained" in message


def test_a_model_whose_body_stage_was_deleted_fails_clearly_until_a_rerun_restores_it(make_job, tmp_path):
    results = run(make_job())
    store = ArtifactStore(tmp_path / "artifacts")
    store.delete_stage("body", results["body"].key)
    body_dir = str(Path(results["body"].uri))
    with pytest.raises(FileNotFoundError, match=r"takes its body from body stage .* which does not exist") as raised:
        SetFitModel.from_pretrained(results["model"].uri, device="cpu")
    assert body_dir in str(raised.value) and "rerun the training job" in str(raised.value)
    with pytest.raises(FileNotFoundError, match=r"takes its body from body stage .*Rerun the training job"):
        predict_to_parquet(results["model"].uri, _texts_file(tmp_path), str(tmp_path / "p.parquet"))
    assert not (tmp_path / "p.parquet").exists()

    rerun = run(make_job())
    assert rerun["body"].status == "computed" and rerun["model"].status == "reused"
    assert len(SetFitModel.from_pretrained(rerun["model"].uri, device="cpu").predict(TEXTS)) == len(TEXTS)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"stage": "body", "key": "0" * 64, "path": "../../../../etc"}, r"'path' must be '\.\./\.\./body/0{64}'"),
        ({"stage": "pairs", "key": "0" * 64, "path": "../../pairs/" + "0" * 64}, r"stage 'body' or 'head'"),
        ({"stage": "body", "key": "../x", "path": "../../body/../x"}, r"64-hex stage key"),
        ({"stage": "body"}, r"not a valid body reference"),
    ],
)
def test_a_tampered_body_reference_is_refused(tmp_path, ref, message):
    model = tmp_path / "model" / "m"
    model.mkdir(parents=True)
    (model / BODY_REF_FILE).write_text(json.dumps(ref))
    with pytest.raises(ValueError, match=message):
        SetFitModel.from_pretrained(str(model), device="cpu")

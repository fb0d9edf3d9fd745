"""Corrupted stages: truncated or altered Parquet, checkpoint and head files, a manifest whose hashes no
longer match, and a manifest pointing outside its stage. Each is detected with a warning, the stage is
recomputed under the same key (its children are reused when their inputs are unchanged), and the final
model loads and verifies. The user's other stages are never touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from setfit_core import SetFitModel
from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline import PipelineJob, PipelineRun

ARGS = {"num_iterations": 2, "seed": 0, "show_progress_bar": False}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _rehash_claim(path: Path) -> None:
    """Append to a file and fix its size in the manifest: only the sha256 now disagrees."""
    with path.open("ab") as handle:
        handle.write(b"\0")
    manifest_path = next(p for p in path.parents if (p / "manifest.json").exists()) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    rel = path.relative_to(manifest_path.parent).as_posix()
    for entry in manifest["files"]:
        if entry["path"] == rel:
            entry["size"] += 1
    manifest_path.write_text(json.dumps(manifest))


def _wrong_hash_in_manifest(path: Path) -> None:
    """Leave the file alone; make the manifest claim another sha256 for it."""
    manifest_path = path.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["path"] == path.name:
            entry["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))


# (stage, file inside the stage, damage, stages a rerun must compute)
CASES = [
    ("pairs", "pairs.parquet", _truncate, {"pairs"}),
    ("body", "model.safetensors", _flip, {"body"}),
    ("embeddings", "embeddings.parquet", _truncate, {"embeddings"}),
    ("head", "model_head.skops", _flip, {"head"}),
    ("evaluation", "metrics.json", _wrong_hash_in_manifest, {"evaluation"}),
    ("model", "body_ref.json", _rehash_claim, {"model"}),  # the reference to the body stage
]


@pytest.fixture
def job(tiny_model_dir, tiny_splits, tmp_path) -> PipelineJob:
    return PipelineJob(train_data=tiny_splits["train"], eval_data=tiny_splits["eval"], model=tiny_model_dir,
                       artifacts_root=str(tmp_path / "artifacts"), args=ARGS)


def _statuses(results) -> dict[str, str]:
    return {stage: result.status for stage, result in results.items()}


@pytest.mark.parametrize(("stage", "relpath", "damage", "computed"), CASES,
                         ids=[f"{c[0]}-{c[2].__name__.strip('_')}" for c in CASES])
def test_damaged_stage_file_is_detected_and_recomputed(job, stage, relpath, damage, computed, caplog):
    first = PipelineRun(job).run_all()
    target = Path(first[stage].uri) / relpath
    assert target.exists(), sorted(p.name for p in target.parent.iterdir())
    untouched = {s: Path(r.uri) / "manifest.json" for s, r in first.items() if s != stage}
    before = {s: p.read_bytes() for s, p in untouched.items()}
    damage(target)

    second = PipelineRun(job).run_all()
    assert {s for s, status in _statuses(second).items() if status == "computed"} == computed
    assert f"stage {first[stage].uri} did not verify" in caplog.text
    assert {s: r.key for s, r in second.items()} == {s: r.key for s, r in first.items()}  # same keys
    assert {s: p.read_bytes() for s, p in untouched.items()} == before  # nothing else rewritten
    store = ArtifactStore(job.artifacts_root)
    assert all(store.find(s, r.key) is not None for s, r in second.items())
    model = SetFitModel.from_pretrained(second["model"].uri)
    assert len(model.predict(["good film", "bad film"])) == 2


def test_manifest_pointing_outside_its_stage_is_rejected_and_recomputed(job, caplog, tmp_path):
    first = PipelineRun(job).run_all()
    outside = tmp_path / "outside.txt"
    outside.write_text("not a stage file")
    manifest_path = Path(first["head"].uri) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][0]["path"] = "../../../outside.txt"
    manifest_path.write_text(json.dumps(manifest))

    second = PipelineRun(job).run_all()
    assert second["head"].status == "computed" and second["embeddings"].status == "reused"
    assert "ignoring stage head/" in caplog.text and "'..'" in caplog.text
    assert outside.read_text() == "not a stage file"
    assert ArtifactStore(job.artifacts_root).verify(second["head"].manifest) == []

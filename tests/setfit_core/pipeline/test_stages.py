"""Stage runs on the tiny model without Prefect: reuse, recomputation, outputs, failures."""

from __future__ import annotations

from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from setfit_core import SetFitModel, Trainer
from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline import PipelineRun, predict_to_parquet
from setfit_core.pipeline.embeddings_stage import EMBEDDINGS_FILE
from setfit_core.pipeline.pairs_stage import PAIRS_FILE, TEXTS_FILE
from tests.conftest import TINY_SPLITS, tree_snapshot
from tests.setfit_core.pipeline.conftest import TINY_ARGS


def statuses(results) -> dict[str, str]:
    return {stage: r.status for stage, r in results.items()}


def run(job, store: ArtifactStore | None = None):
    return PipelineRun(job, store=store).run_all()


def test_full_run_then_head_only_rerun_skips_the_body(make_job, tmp_path):
    first = run(make_job())
    assert set(statuses(first).values()) == {"computed"}
    root = tmp_path / "artifacts"
    body_files = tree_snapshot(root / "body")
    calls = []
    progress = lambda done, total, message: calls.append(message)  # noqa: E731

    second = PipelineRun(make_job(head_params={"C": 0.5})).run_all(progress)
    assert statuses(second) == {"pairs": "reused", "body": "reused", "embeddings": "reused", "head": "computed",
                                "evaluation": "computed", "model": "computed"}
    assert calls == [], "no body training or embedding progress: no body work at all"
    assert tree_snapshot(root / "body") == body_files, "no file under <root>/body was touched"
    assert [p.name for p in (root / "body").iterdir()] == [first["body"].key]
    assert second["head"].manifest.parents == {"embeddings": first["embeddings"].key}
    assert second["head"].manifest.config["head_params"] == {"C": 0.5}
    assert set(second["evaluation"].manifest.metrics) == {"eval"}
    third = run(make_job(head_params={"C": 0.5}))
    assert set(statuses(third).values()) == {"reused"}


def test_stage_outputs_have_the_documented_layout(make_job):
    results = run(make_job(test_data=None))
    pairs = Path(results["pairs"].uri)
    table = pq.read_table(pairs / PAIRS_FILE)
    assert table.column_names == ["sentence_1", "sentence_2", "label"] and table.num_rows == 2 * 2 * 16
    assert pq.read_table(pairs / TEXTS_FILE).column("text").to_pylist() == TINY_SPLITS["train"]["text"]
    embeddings = pq.read_table(Path(results["embeddings"].uri) / EMBEDDINGS_FILE)
    assert embeddings.column_names == ["split", "row", "text_sha256", "label", "embedding"]
    vector = embeddings.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(vector) and vector.value_type == pa.float32() and vector.list_size == 32
    assert embeddings.num_rows == 16 + 8
    assert results["embeddings"].manifest.metrics["texts_encoded"] == 24
    body = Path(results["body"].uri)
    assert (body / "modules.json").exists() and (body / "model.safetensors").exists()
    metrics = results["evaluation"].manifest.metrics["eval"]
    assert {"accuracy", "macro_f1", "per_class", "confusion_matrix", "metric"} <= set(metrics)
    assert set(metrics["per_class"]) == {"negative", "positive"}


def test_exported_model_loads_and_agrees_with_the_evaluation(make_job, tiny_splits):
    run_ = PipelineRun(make_job(test_data=tiny_splits["test"], head_params={"C": 0.5}))
    results = run_.run_all()
    model = SetFitModel.from_pretrained(results["model"].uri, device="cpu")
    assert model.labels == ["negative", "positive"]
    texts, labels = TINY_SPLITS["test"]["text"], TINY_SPLITS["test"]["label"]
    accuracy = float(np.mean([p == y for p, y in zip(model.predict(texts), labels, strict=True)]))
    assert accuracy == pytest.approx(results["evaluation"].manifest.metrics["test"]["accuracy"])

    # Its model card (README.md) holds the run's metrics, frozen-probe baseline and data hashes.
    card = (Path(results["model"].uri) / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "setfit" and meta["pipeline_tag"] == "text-classification"
    evaluation = results["evaluation"].manifest.metrics
    index = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
             for r in meta["model-index"][0]["results"]}
    assert index == {split: {k: evaluation[split][k] for k in ("accuracy", "macro_f1")} for split in ("eval", "test")}
    assert "### Frozen-probe baseline" in card and "- head_params: {\"C\": 0.5}" in card
    for split, digest in run_.data.hashes.items():
        assert f"| {split} | {len(TINY_SPLITS[split]['text'])} | `{digest}` |" in card
    assert "body_ref.json` points at `../../body/" in card and "| negative | <ul><li>'bad movie'" in card
    assert "- **Maximum Sequence Length:** 64 tokens" in card  # read from the referenced body's files
    assert "README.md" in {f.path for f in results["model"].manifest.files}  # verified like every file


def test_seed_change_recomputes_the_body(make_job, tmp_path):
    first = run(make_job())
    second = run(make_job(args={**TINY_ARGS, "seed": 1}))
    assert set(statuses(second).values()) == {"computed"}
    assert second["body"].key != first["body"].key
    assert len(list((tmp_path / "artifacts" / "body").iterdir())) == 2


def test_eval_only_change_recomputes_only_evaluation(make_job):
    run(make_job())
    second = run(make_job(metric="f1"))
    assert statuses(second)["evaluation"] == "computed"
    assert {s for s, status in statuses(second).items() if status == "computed"} == {"evaluation"}
    assert "f1" in second["evaluation"].manifest.metrics["eval"]


def test_flipped_bytes_in_embeddings_are_detected_and_recomputed(make_job, caplog):
    first = run(make_job())
    path = Path(first["embeddings"].uri) / EMBEDDINGS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    second = run(make_job())
    assert statuses(second)["embeddings"] == "computed" and statuses(second)["body"] == "reused"
    assert "did not verify" in caplog.text
    assert second["embeddings"].key == first["embeddings"].key
    assert ArtifactStore(Path(first["embeddings"].uri).parents[1]).verify(second["embeddings"].manifest) == []


def test_pipeline_body_matches_the_trainer(make_job, tiny_model_dir):
    """Same args, same pairs, same seed: the staged body is the Trainer's body."""
    results = run(make_job())
    staged = SetFitModel.from_pretrained(results["body"].uri, device="cpu").model_body.state_dict()
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    trainer = Trainer(model, make_job().training_args.replace(save_strategy="no"), train_dataset=TINY_SPLITS["train"])
    trainer.train_embeddings()
    reference = model.model_body.state_dict()
    assert all(torch.allclose(staged[k], reference[k], atol=1e-6) for k in reference)


def test_gradient_checkpointing_reaches_the_body_stage_and_trains_the_same_body(make_job, tiny_model_dir):
    plain = run(make_job())
    job = make_job(args={**TINY_ARGS, "gradient_checkpointing": True})
    checkpointed = run(job)
    assert checkpointed["body"].key != plain["body"].key
    engines = [r["body"].manifest.metrics["engine"] for r in (plain, checkpointed)]
    assert [e["gradient_checkpointing"] for e in engines] == [False, True]
    assert [e["packed_tokens"] for e in engines] == [True, False]  # a checkpointed layer replays unpacked
    # The staged body is the library's checkpointed body (bit for bit against one without it: the engine tests).
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    Trainer(model, job.training_args.replace(save_strategy="no"), train_dataset=TINY_SPLITS["train"]).train_embeddings()
    staged = SetFitModel.from_pretrained(checkpointed["body"].uri, device="cpu").model_body.state_dict()
    reference = model.model_body.state_dict()
    assert all(torch.equal(staged[k], reference[k]) for k in reference)


@pytest.mark.parametrize("args", [{"loss": "BatchHardTripletLoss"}, {"preset": "fast", "max_steps": 3}])
def test_group_loss_trains_on_label_grouped_rows(make_job, args):
    results = run(make_job(args={**TINY_ARGS, **args}))
    files = {f.path for f in results["pairs"].manifest.files}
    assert files == {TEXTS_FILE}
    assert results["body"].manifest.metrics["steps"] > 0


@pytest.mark.parametrize("end_to_end", [False, True])
def test_differentiable_head(make_job, end_to_end):
    args = {**TINY_ARGS, "end_to_end": end_to_end, "batch_size": [16, 4]}
    results = run(make_job(use_differentiable_head=True, args=args))
    assert results["head"].manifest.config["needs_body"] is end_to_end
    model = SetFitModel.from_pretrained(results["model"].uri, device="cpu")
    assert model.has_differentiable_head and model.model_head.out_features == 2
    assert len(model.predict(["good movie", "awful film"])) == 2
    body = SetFitModel.from_pretrained(results["body"].uri, device="cpu").model_body.state_dict()
    exported = model.model_body.state_dict()
    assert all(torch.equal(body[k], exported[k]) for k in body) is not end_to_end
    # The model references the stage holding its body: the body stage, or the end-to-end head stage.
    ref = results["model"].manifest.metrics["body_ref"]
    assert ref == ({"stage": "head", "key": results["head"].key} if end_to_end
                   else {"stage": "body", "key": results["body"].key})
    assert not (Path(results["model"].uri) / "model.safetensors").exists()


def test_a_failing_stage_publishes_nothing(make_job, tmp_path, monkeypatch):
    import setfit_core.pipeline.head_stage as head_stage

    def explode(*args, **kwargs):
        raise RuntimeError("head fit blew up")

    monkeypatch.setattr(head_stage, "fit_sklearn_head", explode)
    with pytest.raises(RuntimeError, match="head fit blew up"):
        run(make_job())
    root = tmp_path / "artifacts"
    assert [p.name.startswith(".") for p in (root / "head").iterdir()] == [], "no stage, no temp dir left"
    assert not (root / "evaluation").exists()
    monkeypatch.undo()
    assert statuses(run(make_job()))["head"] == "computed"


def test_full_run_head_only_rerun_and_flipped_bytes_on_s3(make_job, s3_root, tiny_splits, tmp_path, caplog):
    caches = iter(range(10))

    def run_on_s3(**changes):  # a fresh cache each time: reuse must be verified against S3, not a local copy
        store = ArtifactStore(s3_root, cache_dir=tmp_path / f"cache-{next(caches)}")
        return run(make_job(artifacts_root=s3_root, **changes), store)

    first = run_on_s3()
    assert set(statuses(first).values()) == {"computed"}
    assert first["model"].uri.startswith(f"{s3_root}/model/")
    second = run_on_s3(head_params={"C": 0.5})
    assert statuses(second) == {"pairs": "reused", "body": "reused", "embeddings": "reused", "head": "computed",
                                "evaluation": "computed", "model": "computed"}
    assert second["body"].manifest == first["body"].manifest

    fs, path = fsspec.core.url_to_fs(f"{first['embeddings'].uri}/{EMBEDDINGS_FILE}")
    blob = bytearray(fs.cat_file(path))
    blob[len(blob) // 2] ^= 0xFF
    fs.pipe_file(path, bytes(blob))
    third = run_on_s3(head_params={"C": 0.5})
    assert {s for s, status in statuses(third).items() if status == "computed"} == {"embeddings"}
    assert "did not verify" in caplog.text

    # Batch prediction straight from the S3 model stage (verified against its manifest), output to S3.
    output = f"{s3_root}/predictions/test.parquet"
    result = predict_to_parquet(second["model"].uri, tiny_splits["test"], output)
    with fsspec.open(output, "rb") as f:
        assert pq.read_table(f).num_rows == result["rows"] == len(TINY_SPLITS["test"]["text"])

"""`train_pipeline` under a temporary Prefect API, on the tiny model, locally and on S3."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from setfit_pipeline.flows.train import train_pipeline

from setfit_core import SetFitModel
from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline import dataset_label
from tests.conftest import tree_snapshot

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
HEAD_ONLY_RERUN = {"pairs": "reused", "body": "reused", "embeddings": "reused", "head": "computed",
                   "evaluation": "computed", "model": "computed"}


@pytest.fixture
def train(tiny_model_dir, tiny_splits, tmp_path):
    """`train(**changes)`: run the flow on the tiny model and splits; returns (result, flow_run_id)."""

    def run(**changes):
        params = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"],
                  "artifacts_root": str(tmp_path / "artifacts"), "model": tiny_model_dir, "args": ARGS, **changes}
        state = train_pipeline(**params, return_state=True)
        return state.result(), state.state_details.flow_run_id

    return run


def statuses(result) -> dict[str, str]:
    return {stage: r["status"] for stage, r in result["stages"].items()}


def test_full_run_then_head_only_rerun(train, tmp_path):
    first, _ = train()
    assert set(statuses(first).values()) == {"computed"} and list(first["stages"]) == list(HEAD_ONLY_RERUN)
    assert set(first["stages"]["body"]) == {"key", "status", "seconds", "uri"}
    assert 0.0 <= first["metrics"]["eval"]["accuracy"] <= 1.0
    root = tmp_path / "artifacts"
    body_files = tree_snapshot(root / "body")

    second, _ = train(head_params={"C": 0.5})
    assert statuses(second) == HEAD_ONLY_RERUN
    assert tree_snapshot(root / "body") == body_files, "no file under <root>/body was touched"
    store = ArtifactStore(root)
    head = store.find("head", second["stages"]["head"]["key"])
    assert head.parents == {"embeddings": first["stages"]["embeddings"]["key"]}
    assert head.config["head_params"] == {"C": 0.5}
    assert [m.key for m in store.list_stages("body")] == [first["stages"]["body"]["key"]]
    assert set(second["metrics"]["eval"]) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    model = SetFitModel.from_pretrained(second["model_uri"], device="cpu")
    assert set(model.predict(["good movie", "awful film"])) <= {"positive", "negative"}


def test_seed_change_recomputes_the_body_and_eval_change_only_evaluation(train):
    first, _ = train()
    reseeded, _ = train(args={**ARGS, "seed": 1})
    assert set(statuses(reseeded).values()) == {"computed"}
    assert reseeded["stages"]["body"]["key"] != first["stages"]["body"]["key"]
    rescored, _ = train(metric="f1")
    assert {s for s, status in statuses(rescored).items() if status == "computed"} == {"evaluation"}
    assert "f1" in rescored["metrics"]["eval"]


def test_flipped_bytes_in_embeddings_are_detected_and_recomputed(train):
    first, _ = train()
    path = Path(first["stages"]["embeddings"]["uri"]) / "embeddings.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    second, _ = train()
    assert statuses(second)["embeddings"] == "computed"
    assert {s for s, status in statuses(second).items() if status == "computed"} == {"embeddings"}, (
        "same content, same key: the stages downstream of the repaired embeddings are reused"
    )


@pytest.mark.slow
def test_full_run_and_head_only_rerun_on_s3(train, s3_root, tiny_splits):
    data = {}
    for split in ("train", "eval"):  # the data comes from S3 too
        data[f"{split}_data"] = f"{s3_root}/data/{split}.parquet"
        with fsspec.open(data[f"{split}_data"], "wb") as f:
            f.write(Path(tiny_splits[split]).read_bytes())
    root = f"{s3_root}/artifacts"
    first, _ = train(artifacts_root=root, **data)
    assert set(statuses(first).values()) == {"computed"}
    assert all(r["uri"].startswith(f"{root}/") for r in first["stages"].values())
    fs, _ = fsspec.core.url_to_fs(root)
    body_objects = {p: fs.info(p)["ETag"] for p in fs.find(f"{root}/body")}

    second, _ = train(artifacts_root=root, head_params={"C": 0.5}, **data)
    assert statuses(second) == HEAD_ONLY_RERUN
    assert {p: fs.info(p)["ETag"] for p in fs.find(f"{root}/body")} == body_objects
    assert second["model_uri"].startswith(f"{root}/model/")



def test_bad_input_fails_before_stage_one(train, tmp_path):
    pd.DataFrame({"sentence": ["a", "b"], "label": [0, 1]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"train_data is missing column\(s\) \['text'\].*column_mapping"):
        train(train_data=str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match=r"'num_iteration' is not a TrainingArguments field"):
        train(args={"num_iteration": 2})
    assert not (tmp_path / "artifacts").exists(), "nothing was written"


def test_ui_names_and_artifacts(train, tiny_splits):
    result, flow_run_id = train(test_data=None)
    dataset = dataset_label(tiny_splits["train"])  # "<parent directory>-train"
    keys = {stage: r["key"] for stage, r in result["stages"].items()}
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert flow_run.name.startswith(f"train-{dataset}-")
    names = {run.name for run in task_runs}
    assert f"plan [{dataset}]" in names and f"body [{dataset}] {keys['body'][:12]}" in names
    by_key = {a.key: a for a in artifacts if a.key}
    # Keys name the deployment ("adhoc": a run started by hand), so a head-only deployment never shows as the
    # nightly one's latest.
    assert by_key[f"setfit-adhoc-{dataset}-metrics"].type == "table"
    summary = by_key[f"setfit-adhoc-{dataset}-summary"].data
    assert all(key[:12] in summary for key in keys.values()) and "| computed |" in summary
    assert result["phase1"].startswith("CosineSimilarityLoss on setfit's pairs")  # what phase 1 trained on
    assert f"Phase 1: {result['phase1']}".split(" (")[0] in summary
    for stage, r in result["stages"].items():  # a local root: the path as text, no file:// link
        location = by_key[f"setfit-adhoc-{dataset}-{stage}"]
        assert location.type == "markdown" and f"`{r['uri']}`" in location.data
    assert not [a for a in artifacts if "file://" in str(a.data)]
    progress = [a for a in artifacts if a.type == "progress"]
    assert len(progress) == 2 and all(float(p.data) == 100.0 for p in progress)  # body and embeddings


def test_a_failed_run_says_where_and_why_in_one_line(tiny_model_dir, tmp_path, tiny_splits):
    """The flow run's state message and a failure artifact carry the CLI's one line, and the stage it failed in."""
    bad = tmp_path / "bad-eval.parquet"
    pd.DataFrame({"text": ["good", "bad"], "label": ["positive", "unheard-of"]}).to_parquet(bad)
    state = train_pipeline(train_data=tiny_splits["train"], eval_data=str(bad), artifacts_root=str(tmp_path / "a"),
                           model=tiny_model_dir, args=ARGS, return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    (failure,) = [a for a in artifacts if a.key and a.key.endswith("-failure")]
    assert failure.key == f"setfit-adhoc-{dataset_label(tiny_splits['train'])}-failure"
    assert "Failed in stage `plan`" in failure.data and "setfit-pipeline: error: " in failure.data
    line = failure.data.split("`setfit-pipeline: error: ", 1)[1].split("`", 1)[0]
    assert line in run.state.message and "never seen in training" in line


@pytest.fixture
def dirty_train(tmp_path, tiny_splits) -> str:
    """The tiny train split with an invisible text (row 0) and a class of one example ('neutral')."""
    frame = pd.read_parquet(tiny_splits["train"])
    frame.loc[0, "text"] = "\u200b"
    frame = pd.concat([frame, pd.DataFrame({"text": ["so so"], "label": ["neutral"]})], ignore_index=True)
    path = tmp_path / "dirty" / "train.parquet"
    path.parent.mkdir()
    frame.to_parquet(path, index=False)
    return str(path)


def test_data_warnings_reach_the_result_and_the_summary_artifact(train, dirty_train):
    result, flow_run_id = train(train_data=dirty_train)
    assert [(w["check"], w["split"]) for w in result["warnings"]] == [
        ("blank-texts", "train_data"), ("single-example-classes", "train_data")]
    assert result["warnings"][0]["message"].startswith(
        "train_data has 1 empty or invisible text(s) at rows [0] ('\\u200b'): ")
    assert set(statuses(result).values()) == {"computed"}, "a warning does not stop the run"
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    summary = {a.key: a for a in artifacts if a.key}[f"setfit-adhoc-{dataset_label(dirty_train)}-summary"].data
    assert "## Data warnings (2)" in summary
    assert "- train\\_data has 1 empty or invisible text(s) at rows \\[0\\] ('\\\\u200b'): " in summary
    assert "- train\\_data has 1 class(es) with fewer than 2 examples: 'neutral' (1); " in summary


def test_strict_fails_in_the_plan_task_and_changes_no_key(train, dirty_train, tmp_path):
    root = tmp_path / "strict-root"
    with pytest.raises(ValueError, match=r"strict data checks found 2 problem\(s\)(.|\n)*'neutral' \(1\)"):
        train(train_data=dirty_train, artifacts_root=str(root), strict=True)
    assert not root.exists(), "nothing was written: the plan task failed before stage 1"
    plain, _ = train()
    strict, _ = train(strict=True)  # clean data: strict only decides whether the run starts
    assert {s: r["key"] for s, r in strict["stages"].items()} == {s: r["key"] for s, r in plain["stages"].items()}
    assert set(statuses(strict).values()) == {"reused"} and strict["warnings"] == []


def test_a_model_below_the_frozen_probe_reaches_the_result_and_the_summary(train, tiny_splits):
    """A deliberately bad recipe (body learning rate 1.0 wrecks the tiny body): the run finishes, and says so."""
    result, flow_run_id = train(args={**ARGS, "num_iterations": 5, "body_learning_rate": 1.0})
    (warning,) = result["warnings"]
    evaluation = result["metrics"]["eval"]
    assert warning["check"] == "below-probe" and warning["split"] == "eval"
    assert warning["message"].startswith(
        f"fine-tuning did not help on eval: the model's accuracy is {evaluation['accuracy']:.4f}, below the "
        f"frozen-probe baseline's {evaluation['probe']['accuracy']:.4f}")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    summary = {a.key: a for a in artifacts if a.key}[f"setfit-adhoc-{dataset_label(tiny_splits['train'])}-summary"].data
    assert "## Fine-tuning did not help" in summary and "fine-tuning did not help on eval" in summary


@pytest.mark.slow
def test_report_to_mlflow_records_the_run_and_keeps_the_keys(train, tmp_path, monkeypatch):
    import mlflow

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store for opt-in use
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    plain, _ = train()
    reported, _ = train(args={**ARGS, "report_to": "mlflow", "run_name": "nightly"})
    assert {s: r["key"] for s, r in reported["stages"].items()} == {s: r["key"] for s, r in plain["stages"].items()}
    assert set(statuses(reported).values()) == {"reused"}  # report_to changes no stage: all reused, still reported
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs(["0"])
    assert run.info.run_name == "nightly" and run.info.status == "FINISHED"
    assert run.data.params["key_body"] == plain["stages"]["body"]["key"] and run.data.params["seed"] == "0"
    assert run.data.metrics["eval_accuracy"] == reported["metrics"]["eval"]["accuracy"]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "embedding_loss")] == [1]
    assert "model/config_setfit.json" in {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    local = client.download_artifacts(run.info.run_id, "model")
    assert set(SetFitModel.from_pretrained(local).predict(["good movie"])) <= {"positive", "negative"}

"""`retrain_many`: configs checked before any run, and 3 datasets (one bad) on a local Dask cluster."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from setfit_pipeline.flows.retrain_configs import load_configs
from setfit_pipeline.flows.retrain_many import RetrainFailures, retrain_many
from setfit_pipeline.tasks.dask_runner import ScaleOut

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasStore
from tests.conftest import TINY_SPLITS

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}


def test_a_list_or_a_file_with_defaults(tmp_path):
    runs = load_configs([{"train_data": "a/train.parquet"}, {"train_data": "b.csv", "name": "bee"}],
                        defaults={"artifacts_root": "art"})
    assert [(r["name"], r["artifacts_root"]) for r in runs] == [("a-train", "art"), ("bee", "art")]
    path = tmp_path / "runs.yaml"
    path.write_text("defaults: {artifacts_root: art, args: {seed: 1}}\nruns:\n  - {train_data: x.parquet}\n"
                    "  - {train_data: y.parquet, args: {seed: 2}}\n")
    assert [r["args"] for r in load_configs(str(path))] == [{"seed": 1}, {"seed": 2}]
    (tmp_path / "runs.json").write_text(json.dumps([{"train_data": "x.parquet", "artifacts_root": "a"}]))
    assert load_configs(str(tmp_path / "runs.json"))[0]["name"] == "x"


@pytest.mark.parametrize(("configs", "message"), [
    ([{"train_data": "x.parquet", "artifacts_root": "a", "eval_dat": "y"}],
     r"configs\[0\]: unknown parameter 'eval_dat'; did you mean 'eval_data'\?"),
    ([{"artifacts_root": "a"}], r"configs\[0\]: train_data is required \(in the run or in defaults\)"),
    ([{"train_data": "a/x.parquet", "artifacts_root": "a"}, {"train_data": "b/x.parquet", "artifacts_root": "a"}],
     r"run names \['x'\] appear more than once; give each run a unique `name:`"),
    ([{"train_data": "x.parquet", "artifacts_root": "a", "promote_to": "Prod!"}],
     r"configs\[0\] \(x\): promote_to must be 1-63 lowercase"),
    ([], "configs must be a non-empty list"),
    (["x.parquet"], r"configs\[0\] must be a mapping of train_pipeline parameters; got 'x.parquet'"),
])
def test_a_broken_config_stops_everything_with_one_clear_error(configs, message):
    with pytest.raises(ValueError, match=message):
        load_configs(configs)


def test_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="configs file '.*nope.yaml' does not exist"):
        load_configs(str(tmp_path / "nope.yaml"))
    (tmp_path / "runs.txt").write_text("[]")
    with pytest.raises(ValueError, match=r"must end in .yaml, .yml or .json"):
        load_configs(str(tmp_path / "runs.txt"))
    (tmp_path / "runs.yaml").write_text("default: {}\nruns: []\n")
    with pytest.raises(ValueError, match=r"unknown top-level keys \['default'\]"):
        load_configs(str(tmp_path / "runs.yaml"))


def test_a_missing_concurrency_limit_fails_before_any_run(tmp_path):
    state = retrain_many([{"train_data": "x.parquet", "artifacts_root": str(tmp_path)}],
                         concurrency_limit="no-such-limit", return_state=True)
    assert state.is_failed()
    assert "global concurrency limit 'no-such-limit' does not exist" in state.message
    assert "prefect gcl create no-such-limit --limit 2" in state.message
    assert not tmp_path.joinpath("pairs").exists()


@pytest.fixture
def dask_threads(monkeypatch):
    """LocalCluster workers as threads (see tests/flows/test_dask.py: process workers cost ~12 s each here)."""
    build = ScaleOut.task_runner_instance

    def threads(self):
        runner = build(self)
        runner.cluster_kwargs.update(processes=False, dashboard_address=None)
        return runner

    monkeypatch.setattr(ScaleOut, "task_runner_instance", threads)


@pytest.mark.slow
def test_three_datasets_one_bad_on_a_local_dask_cluster(dask_threads, tiny_model_dir, tiny_splits, tmp_path):
    root = str(tmp_path / "artifacts")
    bad = tmp_path / "bad" / "train.parquet"  # one class only: the plan task refuses it
    bad.parent.mkdir()
    pd.DataFrame({"text": TINY_SPLITS["train"]["text"], "label": ["positive"] * 16}).to_parquet(bad)
    configs = tmp_path / "runs.yaml"
    configs.write_text(json.dumps({
        "defaults": {"artifacts_root": root, "model": tiny_model_dir, "args": ARGS, "eval_data": tiny_splits["eval"]},
        "runs": [{"name": "acme", "train_data": tiny_splits["train"]},
                 {"name": "broken", "train_data": str(bad)},
                 {"name": "globex", "train_data": tiny_splits["train"], "head_params": {"C": 0.5},
                  "promote_to": "globex"}],
    }))
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="setfit-test-training", limit=1))
    state = retrain_many(str(configs), task_runner="dask", dask_workers=2, concurrency_limit="setfit-test-training",
                         return_state=True)

    assert state.is_failed()
    assert "RetrainFailures: 1 of 3 training runs failed: broken (train_data has a single class ('positive')" in \
        state.message, state.message
    with pytest.raises(RetrainFailures) as failure:
        state.result()
    rows = {row["name"]: row for row in failure.value.rows}
    assert [rows[n]["status"] for n in ("acme", "broken", "globex")] == ["completed", "failed", "completed"]
    assert rows["acme"]["promoted"] == "yes (production)" and rows["globex"]["promoted"] == "yes (globex)"
    assert isinstance(rows["acme"]["metric"], float) and rows["broken"]["metric"] is None
    aliases = AliasStore(ArtifactStore(root))
    assert aliases.current("production").model_uri == rows["acme"]["model_uri"]
    assert aliases.current("globex").model_uri == rows["globex"]["model_uri"]
    assert not list((tmp_path / "artifacts").glob("*/.tmp*"))  # the failed run left no half-written stage

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    (summary,) = [a for a in artifacts if a.key == "setfit-adhoc-retrain-many-summary"]
    table = json.loads(summary.data)
    assert [(r["name"], r["status"]) for r in table] == [("acme", "completed"), ("broken", "failed"),
                                                         ("globex", "completed")]

"""The promotion gate of `train_pipeline` on the tiny model: promote, refuse a worse model, refuse a label change,
no eval data, a lost race, two runs at once, and an S3 root (moto)."""

from __future__ import annotations

import json
import threading

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from setfit_pipeline.flows.train import train_pipeline

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasRecord, AliasStore
from tests.conftest import TINY_SPLITS

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
FLIP = {"positive": "negative", "negative": "positive"}


@pytest.fixture
def train(tiny_model_dir, tiny_splits, tmp_path):
    """`train(**changes)`: the flow on the tiny model and splits; returns (result, flow_run_id)."""

    def run(**changes):
        params = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"],
                  "artifacts_root": str(tmp_path / "artifacts"), "model": tiny_model_dir, "args": ARGS, **changes}
        state = train_pipeline(**params, return_state=True)
        return state.result(), str(state.state_details.flow_run_id)

    return run


def train_file(tmp_path, name: str, **columns) -> str:
    path = tmp_path / f"{name}.parquet"
    pd.DataFrame({**TINY_SPLITS["train"], **columns}).to_parquet(path, index=False)
    return str(path)


def summary_of(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return next(a.data for a in artifacts if a.key and a.key.endswith("-summary"))


@pytest.mark.slow
def test_promote_then_keep_the_better_model_then_refuse_a_label_change(train, tmp_path):
    root = tmp_path / "artifacts"
    first, run_id = train()
    promotion = first["promotion"]
    assert promotion == {"alias": "production", "promoted": True, "model_uri": first["model_uri"],
                         "reason": "promoted: first model for alias 'production' (accuracy 0.7500 on eval_data)",
                         "previous_model_uri": None, "metric": 0.75, "previous_metric": None}
    record = json.loads((root / "aliases" / "production.json").read_text())
    assert (record["model_uri"], record["flow_run_id"], record["version"]) == (first["model_uri"], run_id, 1)
    assert record["metrics"] == {"accuracy": 0.75, "macro_f1": first["metrics"]["eval"]["macro_f1"]}
    assert record["labels"] == ["negative", "positive"] and record["time"]
    assert "## Promotion to `production`: promoted" in summary_of(run_id)

    # Labels flipped: the model learns the opposite, scores 0.25 where the current model, re-scored, has 0.75.
    worse, run_id = train(train_data=train_file(tmp_path, "flipped", label=[FLIP[x] for x in
                                                                           TINY_SPLITS["train"]["label"]]))
    assert worse["promotion"]["promoted"] is False
    assert worse["promotion"]["reason"] == (
        f"not promoted: accuracy 0.2500 on this run's eval set, against 0.7500 for the current model + "
        f"min_improvement 0 = 0.7500; the alias keeps {first['model_uri']}")
    assert (worse["promotion"]["metric"], worse["promotion"]["previous_metric"]) == (0.25, 0.75)
    assert "## Promotion to `production`: not promoted" in summary_of(run_id)
    assert AliasStore(ArtifactStore(root)).current("production").model_uri == first["model_uri"]

    # A third class appears: refused whatever the score, and the reason names it.
    labels = TINY_SPLITS["train"]["label"][:-2] + ["neutral", "neutral"]
    with_neutral = train_file(tmp_path, "neutral", label=labels)
    refused, _ = train(train_data=with_neutral)
    assert refused["promotion"]["promoted"] is False
    assert "the label set changed (labels appeared: ['neutral'])" in refused["promotion"]["reason"]
    assert "Pass allow_label_change=True" in refused["promotion"]["reason"]
    # Allowed, and with a negative min_improvement so the outcome does not hang on the tiny model's scores. The
    # gate's parameters are part of no stage key: every stage is reused.
    allowed, _ = train(train_data=with_neutral, allow_label_change=True, min_improvement=-1.0)
    assert {s["status"] for s in allowed["stages"].values()} == {"reused"}
    assert allowed["promotion"]["promoted"] is True
    assert "labels appeared: ['neutral'], allowed by allow_label_change" in allowed["promotion"]["reason"]
    history = AliasStore(ArtifactStore(root)).history("production")
    assert [(r.version, r.model_uri, r.previous_model_uri) for r in history] == [
        (1, first["model_uri"], None), (2, allowed["model_uri"], first["model_uri"])]

    # The same model again: nothing to change, nothing written.
    again, _ = train(train_data=with_neutral, allow_label_change=True)
    assert again["promotion"]["reason"] == "alias 'production' already points to this model"
    assert len(AliasStore(ArtifactStore(root)).history("production")) == 2


@pytest.mark.slow
def test_no_eval_data_or_no_gate_promotes_nothing(train, tmp_path):
    result, run_id = train(eval_data=None)
    assert result["promotion"]["promoted"] is False
    assert result["promotion"]["reason"].startswith("no eval_data: the gate compares models on the run's eval set")
    off, _ = train(promote_to=None)
    assert off["promotion"] == {"alias": None, "promoted": False, "reason": "no promotion gate (promote_to=None)",
                                "model_uri": off["model_uri"], "previous_model_uri": None, "metric": None,
                                "previous_metric": None}
    aliases = tmp_path / "artifacts" / "aliases"
    assert AliasStore(ArtifactStore(str(tmp_path / "artifacts"))).current("production") is None
    # The gated run without eval data is in the alias's run history (the night it could not promote); the
    # run without a gate is not.
    assert sorted(p.name for p in aliases.iterdir()) == ["production.runs"]
    assert "no eval\\_data" in summary_of(run_id)


@pytest.mark.parametrize(("changes", "message"), [
    ({"promote_to": "Production/v2"}, r"promote_to must be 1-63 lowercase letters, digits, '-' or '_'.*"
                                      r"got 'Production/v2'"),
    ({"promote_to": ""}, r"promote_to must be 1-63 lowercase letters"),
    ({"min_improvement": float("nan")}, r"min_improvement must be a finite number .*got nan"),
])
def test_bad_gate_parameters_fail_before_any_task(train, tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        train(**changes)
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.slow
def test_a_run_that_loses_the_race_says_who_won_and_changes_nothing(train, tmp_path, monkeypatch):
    first, _ = train()
    original = AliasStore.change

    def another_run_gets_there_first(self, record, expected_version):
        rival = AliasRecord(alias=record.alias, version=0, model_uri="/elsewhere/model/rival", action="promote",
                            reason="rival", flow_run_id="rival-run")
        assert original(self, rival, expected_version).won
        return original(self, record, expected_version)

    monkeypatch.setattr(AliasStore, "change", another_run_gets_there_first)
    second, _ = train(head_params={"C": 0.5})
    monkeypatch.undo()
    assert second["promotion"]["promoted"] is False
    assert second["promotion"]["reason"] == (
        "lost a race: while this run compared against version 1 of alias 'production', flow run rival-run moved it "
        "to /elsewhere/model/rival (version 2); the alias keeps the winner's model. Rerun to compare against it")
    assert second["promotion"]["previous_model_uri"] == "/elsewhere/model/rival"
    history = AliasStore(ArtifactStore(tmp_path / "artifacts")).history("production")
    assert [r.model_uri for r in history] == [first["model_uri"], "/elsewhere/model/rival"]


@pytest.mark.slow
def test_two_runs_promoting_at_once_leave_one_consistent_history(train, tmp_path):
    first, _ = train()  # the holder both runs compare against
    results: dict[float, tuple] = {}

    def run(c: float) -> None:
        results[c] = train(head_params={"C": c})

    threads = [threading.Thread(target=run, args=(c,)) for c in (0.5, 2.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2
    history = AliasStore(ArtifactStore(tmp_path / "artifacts")).history("production")
    # Versions 1..n with no gap, each change naming the model before it: no event lost or written twice.
    assert [r.version for r in history] == list(range(1, len(history) + 1))
    assert all(r.previous_model_uri == before.model_uri for before, r in zip(history, history[1:], strict=False))
    for result, run_id in results.values():
        promotion = result["promotion"]
        events = [r for r in history if r.flow_run_id == run_id]
        assert len(events) == (1 if promotion["promoted"] else 0), (promotion, history)
        assert promotion["reason"]
    assert AliasStore(ArtifactStore(tmp_path / "artifacts")).current("production") == history[-1]


@pytest.mark.slow
def test_the_alias_on_s3_is_written_and_read_back(train, s3_root, tmp_path):
    result, run_id = train(artifacts_root=s3_root)
    assert result["promotion"]["promoted"] is True and result["model_uri"].startswith(s3_root)
    store = ArtifactStore(s3_root, cache_dir=tmp_path / "cache")
    record = AliasStore(store).current("production")
    assert (record.model_uri, record.flow_run_id) == (result["model_uri"], run_id)
    rerun, _ = train(artifacts_root=s3_root, head_params={"C": 0.5})
    assert rerun["promotion"]["previous_model_uri"] == result["model_uri"]
    assert rerun["promotion"]["previous_metric"] == result["promotion"]["metric"]  # re-scored from S3

"""The history artifact of `train_pipeline`: after 3 gated runs the UI's table holds 3 rows, newest first."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from setfit_pipeline.flows.train import train_pipeline

from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline import dataset_label
from setfit_core.pipeline.run_history import RunHistory

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}


def versions(key: str) -> list:
    """Every version of an artifact key, newest first."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort=ArtifactSort.CREATED_DESC)


@pytest.mark.slow
def test_three_runs_make_a_three_row_history_and_a_trend(tiny_model_dir, tiny_splits, tmp_path):
    root = str(tmp_path / "artifacts")
    params = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "artifacts_root": root,
              "model": tiny_model_dir, "args": ARGS}
    dataset = dataset_label(tiny_splits["train"])
    key = f"setfit-adhoc-{dataset}-production-history"
    before = len(versions(key))  # other tests of the session train this dataset too
    first = train_pipeline(**params)
    second = train_pipeline(**params)  # every stage reused: the alias already points to this model
    third = train_pipeline(**params, head_params={"C": 0.05})  # a new head: a new model, scored again
    train_pipeline(**params, head_params={"C": 0.5}, promote_to=None)  # an experiment: not in the history

    entries = RunHistory(ArtifactStore(root), "production", dataset).last()
    assert [e.model_uri for e in entries] == [first["model_uri"], second["model_uri"], third["model_uri"]]
    assert [e.promoted for e in entries] == [True, False, third["promotion"]["promoted"]]
    assert entries[1].reason == "alias 'production' already points to this model"

    tables = versions(key)
    assert len(tables) - before == 3  # one version per gated run: the UI shows how it moved
    rows = json.loads(tables[0].data)
    assert [r["model"] for r in rows] == [r["model_uri"].rsplit("/", 1)[-1][:12] for r in (third, second, first)]
    assert rows[-1]["promoted"] == "yes" and rows[-1]["reason"].startswith("promoted: first model")
    assert rows[-1]["accuracy"] == round(first["metrics"]["eval"]["accuracy"], 4)
    assert rows[-1]["probe"] == round(first["metrics"]["eval"]["probe"]["accuracy"], 4)
    assert set(rows[0]) == {"date", "model", "accuracy", "probe", "alias before", "promoted", "reason", "flow run",
                            "deployment"}

    (trend, *_) = versions(f"setfit-adhoc-{dataset}-production-trend")
    assert "Last 3 runs, oldest first" in trend.data and "of 3 runs promoted" in trend.data

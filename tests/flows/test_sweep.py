"""`sweep_pipeline`: an 8-point head grid on one body, an optuna search of 4 trials, a body grid, bad input."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from setfit_pipeline.flows.sweep import sweep_pipeline

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasStore
from setfit_core.pipeline import dataset_label

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
GRID = [{"C": c} for c in (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)]


@pytest.fixture
def params(tiny_model_dir, tiny_splits, tmp_path):
    return {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "model": tiny_model_dir,
            "artifacts_root": str(tmp_path / "artifacts"), "args": ARGS}


@pytest.mark.slow
def test_an_8_point_head_grid_trains_one_body_and_exports_only_the_best(params, tmp_path):
    state = sweep_pipeline(**params, head_grid=GRID, head_params={"max_iter": 200}, return_state=True)
    result = state.result()
    store = ArtifactStore(params["artifacts_root"])
    assert len(result["trials"]) == 8
    assert [t["head_params"] for t in result["trials"]] == [{"max_iter": 200, **p} for p in GRID]
    assert len(store.list_stages("body")) == 1 and len(store.list_stages("embeddings")) == 1
    assert len(store.list_stages("head")) == 8 and len(store.list_stages("evaluation")) == 8
    assert len(store.list_stages("model")) == 1  # only the best
    values = [t["metrics"]["eval"]["accuracy"] for t in result["trials"]]
    assert result["best"]["metrics"]["eval"]["accuracy"] == max(values)
    assert result["best"] == result["trials"][values.index(max(values))]
    assert result["stages"]["head"]["key"] == result["best"]["stages"]["head"]["key"]
    assert result["promotion"]["promoted"] is True
    assert AliasStore(store).current("production").model_uri == result["model_uri"]
    key = f"setfit-adhoc-{dataset_label(params['train_data'])}-sweep"
    with get_client(sync_client=True) as client:
        (table,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert [r["best"] for r in json.loads(table.data)].count("yes") == 1

    again = sweep_pipeline(**params, head_grid=GRID, head_params={"max_iter": 200})  # every stage reused
    assert {t["stages"]["head"]["status"] for t in again["trials"]} == {"reused"}
    assert again["model_uri"] == result["model_uri"]


@pytest.mark.slow
def test_an_optuna_search_of_4_trials_and_a_body_grid(params):
    space = {"C": {"type": "float", "low": 0.001, "high": 10.0, "log": True}}
    result = sweep_pipeline(**params, search_space=space, n_trials=4, trials_at_once=2,
                            args_grid=[{}, {"seed": 1}], promote_to=None)
    store = ArtifactStore(params["artifacts_root"])
    assert len(result["trials"]) == 8  # 4 per body config
    assert len(store.list_stages("body")) == 2  # each distinct body config trained once
    assert all(0.001 <= t["head_params"]["C"] <= 10.0 for t in result["trials"])
    assert [t["args"].get("seed") for t in result["trials"]] == [0] * 4 + [1] * 4
    assert result["promotion"]["alias"] is None and len(store.list_stages("model")) == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({}, "pass head_grid .* or search_space .*, exactly one of them"),
    ({"head_grid": [{"C": 1}], "search_space": {"C": {}}}, "exactly one of them"),
    ({"head_grid": []}, "head_grid must be a non-empty list"),
    ({"search_space": {"C": {"type": "normal"}}}, r"search_space\['C'\] is not a distribution \(type must be one"),
    ({"search_space": {"C": {"type": "float", "low": 1}}}, r"search_space\['C'\] is not a distribution \(missing"),
    ({"head_grid": [{"C": 1}], "n_trials": 0}, "n_trials must be an integer >= 1; got 0"),
    ({"head_grid": [{"C": 1}], "eval_data": ""}, "sweep_pipeline needs eval_data"),
    ({"head_grid": [{"C": 1}], "args_grid": []}, "args_grid must be a non-empty list"),
])
def test_bad_input_fails_before_any_stage(params, changes, message):
    state = sweep_pipeline(**{**params, **changes}, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match=message):
        state.result()
    assert not ArtifactStore(params["artifacts_root"]).list_stages("pairs")


def test_head_variants_update_head_params():
    from setfit_core.pipeline.sweep import head_variants

    assert head_variants({"max_iter": 50}, [{"C": 1}, {"max_iter": 9}]) == [{"max_iter": 50, "C": 1}, {"max_iter": 9}]
    with pytest.raises(ValueError, match=r"head_grid\[1\] must be a mapping of head parameters; got 3"):
        head_variants(None, [{"C": 1}, 3])


def test_without_optuna_the_error_names_the_extra(monkeypatch):
    import builtins

    from setfit_core.pipeline.sweep import HeadSearch

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "optuna" else real(name, *a, **k))
    with pytest.raises(ImportError, match=r"pip install 'setfit-pipeline\[sweep\]'"):
        HeadSearch({"C": {"type": "float", "low": 0.1, "high": 1}})

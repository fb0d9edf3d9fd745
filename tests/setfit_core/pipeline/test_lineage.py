"""A model's lineage: which job changes start a new one, and that it is recorded beside the key, not in it."""

from __future__ import annotations

import shutil

import pandas as pd

from setfit_core.pipeline import PipelineRun
from setfit_core.pipeline.lineage import lineage, lineage_setup
from tests.conftest import TINY_SPLITS
from tests.setfit_core.pipeline.conftest import TINY_ARGS


def keys(job) -> dict[str, str]:
    return {stage: spec.key for stage, spec in PipelineRun(job).plan.items()}


def write_train(path, extra_rows: int = 0) -> str:
    train = TINY_SPLITS["train"]
    rows = {"text": train["text"] + ["good film"] * extra_rows, "label": train["label"] + ["positive"] * extra_rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return str(path)


def test_new_data_at_the_same_path_stays_in_the_lineage_and_the_same_data_elsewhere_does_not(make_job, tmp_path):
    nightly = tmp_path / "nightly" / "train.parquet"
    monday = make_job(train_data=write_train(nightly))
    monday_keys = keys(monday)
    tuesday = make_job(train_data=write_train(nightly, extra_rows=2))
    assert lineage(tuesday) == lineage(monday) and keys(tuesday)["pairs"] != monday_keys["pairs"]

    copy = tmp_path / "copy" / "train.parquet"
    copy.parent.mkdir()
    shutil.copyfile(write_train(nightly), copy)
    elsewhere = make_job(train_data=str(copy))
    assert lineage(elsewhere)["id"] != lineage(monday)["id"] and keys(elsewhere) == monday_keys


def test_training_and_head_settings_start_a_lineage_evaluation_and_layout_do_not(make_job, tiny_splits, tmp_path):
    base = lineage(make_job())["id"]
    new_lineage = [
        make_job(head_params={"C": 0.5}),
        make_job(use_differentiable_head=True),
        make_job(args={**TINY_ARGS, "seed": 1}),
        make_job(args={**TINY_ARGS, "body_learning_rate": [3e-5, 1e-5]}),
        make_job(model=str(tmp_path / "another-name-for-the-model")),
        make_job(column_mapping={"text": "text", "label": "label"}),
    ]
    assert len({lineage(job)["id"] for job in new_lineage} | {base}) == len(new_lineage) + 1
    same_lineage = [
        make_job(eval_data=tiny_splits["test"]),
        make_job(metric="f1"),
        make_job(self_contained=True),
        make_job(args={**TINY_ARGS, "show_progress_bar": True, "output_dir": "elsewhere"}),  # change no artifact
        make_job(args={**TINY_ARGS, "margin": 0.25}),  # the default, spelled out
    ]
    assert {lineage(job)["id"] for job in same_lineage} == {base}


def test_the_lineage_holds_what_differs_from_the_defaults_and_a_readable_label(make_job, tiny_splits):
    job = make_job(head_params={"C": 0.5, "max_iter": 200})
    setup = lineage_setup(job)
    assert setup["train_data"] == tiny_splits["train"] and setup["column_mapping"] is None
    assert setup["args"] == {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2]}
    assert setup["head"] == {"head_params": {"C": 0.5, "max_iter": 200}, "use_differentiable_head": False}
    found = lineage(job)
    assert len(found["id"]) == 12 and int(found["id"], 16) >= 0
    assert found["label"] == "tiny-splits0-train · LogisticRegression(C=0.5, max_iter=200)"


def test_the_model_manifest_records_the_lineage_and_the_key_ignores_it(make_job, tmp_path):
    nightly = tmp_path / "nightly" / "train.parquet"
    job = make_job(train_data=write_train(nightly))
    model = PipelineRun(job).run_all()["model"]
    assert model.manifest.metrics["lineage"] == lineage(job)
    assert "lineage" not in model.manifest.config and "train_data" not in str(model.manifest.config)

"""The deployments' pull step finds the checkout with no variable set (a plain `prefect worker start`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml
from prefect.deployments.steps.core import run_step
from setfit_pipeline.flows import checkout, prefect_ops

STEP = "setfit_pipeline.flows.checkout.set_checkout_directory"


@pytest.fixture(autouse=True)
def _restore_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a worker's flow run starts in a temporary directory; restored afterwards


def test_the_deployments_use_this_step_and_module_entrypoints():
    config = yaml.safe_load(prefect_ops.PREFECT_FILE.read_text())
    assert config["pull"] == [{STEP: {"directory": "{{ $SETFIT_PIPELINE_HOME }}"}}]
    entrypoints = {d["name"]: d["entrypoint"] for d in config["deployments"]}
    assert entrypoints == {"nightly-retrain": "setfit_pipeline.flows.train:train_pipeline",
                           "head-only-retrain": "setfit_pipeline.flows.train:train_pipeline",
                           "sweep": "setfit_pipeline.flows.sweep:sweep_pipeline",
                           "batch-predict": "setfit_pipeline.flows.predict:predict_flow"}
    predict = next(d for d in config["deployments"] if d["name"] == "batch-predict")
    assert predict["parameters"]["model"] == "artifacts/aliases/production.json"


def test_without_the_variable_prefect_runs_the_step_into_the_installed_checkout(monkeypatch):
    monkeypatch.delenv(checkout.HOME_VARIABLE, raising=False)
    output = asyncio.run(run_step({STEP: {"directory": "{{ $SETFIT_PIPELINE_HOME }}"}}))
    assert output == {"directory": str(prefect_ops.REPO_ROOT)}
    assert Path.cwd() == prefect_ops.REPO_ROOT and (Path.cwd() / "flows" / "train.py").is_file()


def test_the_variable_wins_and_a_wrong_one_names_itself(monkeypatch, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    monkeypatch.setenv(checkout.HOME_VARIABLE, str(target))
    assert asyncio.run(run_step({STEP: {"directory": "{{ $SETFIT_PIPELINE_HOME }}"}})) == {"directory": str(target)}
    assert Path.cwd() == target
    monkeypatch.setenv(checkout.HOME_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"SETFIT_PIPELINE_HOME='.*missing' is not a directory; set it to "
                                                r"the checkout of setfit-pipeline that holds deployments/prefect.yaml"):
        asyncio.run(run_step({STEP: {"directory": "{{ $SETFIT_PIPELINE_HOME }}"}}))


def test_an_install_without_a_checkout_says_what_to_set(monkeypatch):
    monkeypatch.setattr(checkout, "installed_checkout", lambda: None)
    cwd = os.getcwd()
    with pytest.raises(FileNotFoundError, match=r"no setfit-pipeline checkout to run in: .* Install it editable from "
                                                r"the checkout .*or set SETFIT_PIPELINE_HOME to the checkout"):
        checkout.set_checkout_directory(None)
    assert os.getcwd() == cwd

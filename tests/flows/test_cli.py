"""`setfit-pipeline` commands: train / predict through the real flows, help everywhere, clear errors (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from setfit_pipeline.flows import prefect_ops
from setfit_pipeline.flows.cli import main

COMMANDS = [[], ["train"], ["predict"], ["server"], ["deploy"], ["worker"], ["artifacts"], ["artifacts", "ls"],
            ["artifacts", "show"], ["artifacts", "gc"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: setfit-pipeline") and len(out) > 200


@pytest.fixture
def config_file(tmp_path, tiny_model_dir, tiny_splits):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "model": tiny_model_dir,
        "artifacts_root": str(tmp_path / "artifacts"), "args": {"num_iterations": 2, "seed": 0},
    }))
    return path


def test_train_from_a_config_file_then_a_head_only_change_from_flags(config_file, tmp_path, tiny_splits, capsys):
    assert main(["train", "--config", str(config_file)]) == 0
    first = capsys.readouterr().out
    assert "body" in first and "computed" in first and "model: " in first

    assert main(["train", "--config", str(config_file), "--head-params", '{"C": 0.25}', "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {s: r["status"] for s, r in result["stages"].items()} == {
        "pairs": "reused", "body": "reused", "embeddings": "reused",
        "head": "computed", "evaluation": "computed", "model": "computed"}

    # --self-contained changes only the model stage: a directory holding the body's files too.
    assert main(["train", "--config", str(config_file), "--head-params", '{"C": 0.25}', "--self-contained",
                 "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert {s for s, r in shipped["stages"].items() if r["status"] == "computed"} == {"model"}
    assert os.path.exists(os.path.join(shipped["model_uri"], "model.safetensors"))
    assert not os.path.exists(os.path.join(result["model_uri"], "model.safetensors"))

    output = tmp_path / "predictions.parquet"
    assert main(["predict", result["model_uri"], tiny_splits["test"], str(output)]) == 0
    assert "predicted 6 rows" in capsys.readouterr().out
    assert len(pd.read_parquet(output)) == 6

    # An existing directory as OUTPUT, twice: a named file inside it, one row per input, no temp file left.
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    for _ in range(2):
        assert main(["predict", result["model_uri"], tiny_splits["test"], str(outdir)]) == 0
        out = capsys.readouterr().out
        assert "predicted 6 rows in" in out and f"-> {outdir / 'predictions.parquet'}" in out
    assert sorted(p.name for p in outdir.iterdir()) == ["predictions.parquet"]
    assert len(pd.read_parquet(outdir)) == 6


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--artifacts-root", "a"], "--train-data is required"),
    (["train", "--train-data", "x.parquet", "--artifacts-root", "a", "--args", '{"num_iteration": 3}'],
     "num_iterations"),
    (["predict", "model-dir", "missing.parquet", "out.parquet"], "input 'missing.parquet' does not exist"),
    (["predict", "model-dir", "in.parquet", "out.parquet", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["artifacts", "gc", "no-such-root-dir"], "no-such-root-dir"),
    (["train", "--train-data", "x.parquet", "--artifacts-root", "a", "--shards", "2"],
     "shards=2 only applies with task_runner='dask'"),
    (["train", "--train-data", "x.parquet", "--artifacts-root", "a", "--task-runner", "dask", "--dask-workers", "0"],
     "dask_workers must be an integer >= 1"),
])
def test_user_errors_exit_2_with_the_value_and_the_fix(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("setfit-pipeline: error: ") and message in err, err


def test_config_file_errors_name_the_file_and_the_closest_key(tmp_path, capsys):
    typo = tmp_path / "job.yaml"
    typo.write_text("train_dat: x.parquet\nartifacts_root: a\n")
    assert main(["train", "--config", str(typo)]) == 2
    assert "unknown parameter 'train_dat'; did you mean 'train_data'?" in capsys.readouterr().err
    wrong_type = tmp_path / "job.toml"
    wrong_type.write_text("")
    assert main(["train", "--config", str(wrong_type)]) == 2
    assert "must end in .yaml, .yml or .json" in capsys.readouterr().err


def test_bad_json_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--train-data", "x", "--artifacts-root", "a", "--args", "{seed: 0}"])
    assert exited.value.code == 2
    assert "--args must be a JSON object" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["deploy", "worker"])
def test_server_commands_without_a_server_say_how_to_start_one(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path)  # no profile pointing at a server
    done = subprocess.run([sys.executable, "-m", "setfit_pipeline.flows.cli", command], cwd=prefect_ops.REPO_ROOT,
                          env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "needs a Prefect server: start one with `setfit-pipeline server`" in done.stderr

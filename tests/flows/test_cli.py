"""`setfit-pipeline` commands: train / predict through the real flows, help everywhere, clear errors (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    (["train", "--train-data", "x.parquet", "--artifacts-root", "a", "--onnx-quantize", "int8"],
     "onnx_quantize='int8' applies to the ONNX export; set export_onnx=true too"),
])
def test_user_errors_exit_2_with_the_value_and_the_fix(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("setfit-pipeline: error: ") and message in err, err


def test_export_onnx_flags_become_train_pipeline_parameters():
    from setfit_pipeline.flows.cli import build_parser, train_parameters

    cli = build_parser().parse_args(["train", "--train-data", "x.parquet", "--artifacts-root", "a", "--export-onnx",
                                     "--onnx-quantize", "int8"])
    params = train_parameters(cli)
    assert params["export_onnx"] is True and params["onnx_quantize"] == "int8"
    assert build_parser().parse_args(["predict", "m", "in", "out", "--engine", "onnx"]).engine == "onnx"
    assert build_parser().parse_args(["predict", "m", "in", "out"]).engine == "torch"


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


# ---- one-line errors: exit 2, the value and the fix, no traceback unless --verbose -----------------------------


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("setfit-pipeline: error: ")]


@pytest.fixture
def single_class(tmp_path) -> str:
    path = tmp_path / "one-class.parquet"
    pd.DataFrame({"text": ["a good film", "a great plot", "fine acting"], "label": [1, 1, 1]}).to_parquet(path)
    return str(path)


def test_a_failure_inside_the_flow_is_one_line_and_verbose_adds_the_traceback(single_class, tmp_path):
    """As a user runs it: its own process and temporary Prefect API (in-process, pytest's capture and Prefect's
    console handler get in each other's way)."""
    argv = [sys.executable, "-m", "setfit_pipeline.flows.cli", "train", "--train-data", single_class,
            "--artifacts-root", str(tmp_path / "a")]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert _error_lines(done.stderr) == ["setfit-pipeline: error: train_data has a single class (1); SetFit needs at "
                                         "least 2 classes to form negative pairs. Add examples of another class"]
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.splitlines()) < 12, done.stderr  # the temporary API's start and stop, the run, the line
    done = subprocess.run([*argv, "--verbose"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and len(_error_lines(done.stderr)) == 1


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credentials anywhere botocore looks: environment, shared files, the instance metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize("where", ["artifacts_root", "train_data"])
def test_missing_s3_credentials_name_the_variables(where, no_aws_credentials, tiny_splits, tmp_path, capsys):
    root = "s3://setfit-artifacts/x" if where == "artifacts_root" else str(tmp_path / "a")
    train = "s3://setfit-artifacts/train.parquet" if where == "train_data" else tiny_splits["train"]
    assert main(["train", "--train-data", train, "--artifacts-root", root]) == 2
    captured = capsys.readouterr()
    (line,) = _error_lines(captured.err)
    assert line.startswith("setfit-pipeline: error: no AWS credentials to ")
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line and "storage_options" in line


def test_an_unreachable_endpoint_names_the_setting(monkeypatch, tiny_splits, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert main(["train", "--train-data", tiny_splits["train"], "--artifacts-root", "s3://bucket/x"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "could not write to s3://bucket/x" in line
    assert "AWS_ENDPOINT_URL (or storage_options['endpoint_url'])" in line


def test_a_missing_bucket_is_named(s3_server, tiny_splits, capsys):
    assert main(["train", "--train-data", tiny_splits["train"], "--artifacts-root", "s3://no-such-bucket/x"]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "bucket 'no-such-bucket' does not exist" in line and "create it or fix the s3:// URI" in line


def test_predict_takes_key_prefixes_and_refuses_other_stages(config_file, tmp_path, tiny_splits, capsys):
    assert main(["train", "--config", str(config_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    root = str(tmp_path / "artifacts")
    model_key, body_key = result["stages"]["model"]["key"], result["stages"]["body"]["key"]
    out = tmp_path / "p.parquet"
    assert main(["predict", f"{root}/model/{model_key[:12]}", tiny_splits["test"], str(out)]) == 0
    assert len(pd.read_parquet(out)) == 6
    capsys.readouterr()
    assert main(["predict", f"{root}/body/{body_key}", tiny_splits["test"], str(out)]) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"setfit-pipeline: error: model '{root}/body/{body_key}' is the body stage of a training run, not a model; "
        f"use {root}/model/<key> (`setfit-pipeline artifacts ls {root} --stage model` lists them)"]
    assert main(["predict", f"{root}/model/deadbeefdead", tiny_splits["test"], str(out)]) == 2
    assert "no model stage has a key starting with 'deadbeefdead'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "no-model"), tiny_splits["test"], str(out)]) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "does not exist; pass the model directory a training run printed (model: ...)" in line
    assert "bundled offline model" not in line


@pytest.mark.slow
def test_on_a_terminal_train_draws_progress_bars_and_quiet_turns_them_off(config_file, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    def run(*extra: str) -> str:
        """The CLI with stderr on a pseudo-terminal, as in an interactive shell; returns what it drew there."""
        primary, secondary = pty.openpty()
        # A new pseudo-terminal is 0 columns wide, and tqdm draws nothing in that: give it a shell's size.
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
        env.pop("PREFECT_API_URL", None)
        process = subprocess.Popen([sys.executable, "-m", "setfit_pipeline.flows.cli", "train", "--config",
                                    str(config_file), "--artifacts-root", str(tmp_path / f"a{len(extra)}"), *extra],
                                   stdout=subprocess.DEVNULL, stderr=secondary, env=env)
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=300) == 0
        os.close(primary)
        return b"".join(chunks).decode(errors="replace")

    drawn = run()
    assert "body " in drawn and any(rate in drawn for rate in ("step/s", "s/step")), drawn[-2000:]
    assert "embeddings " in drawn and any(rate in drawn for rate in ("text/s", "s/text")), drawn[-2000:]
    quiet = run("--quiet")
    assert not any(rate in quiet for rate in ("step/s", "s/step", "text/s", "s/text")), quiet[-2000:]


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append((int(stat.parent.name), cmdline))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_cli_leaves_no_api_server_behind(tiny_model_dir, tiny_splits, tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    env.pop("PREFECT_API_URL", None)
    args = json.dumps({"num_iterations": 400, "seed": 0})  # a body long enough to be killed in
    cli = subprocess.Popen([sys.executable, "-m", "setfit_pipeline.flows.cli", "train", "--train-data",
                            tiny_splits["train"], "--artifacts-root", str(tmp_path / "a"), "--model", tiny_model_dir,
                            "--args", args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        servers: list[tuple[int, str]] = []
        while time.monotonic() < deadline and not servers:
            servers = [c for c in _children(cli.pid) if "uvicorn" in c[1]]
            time.sleep(0.5)
        assert servers, "the CLI started no temporary API server"
        while time.monotonic() < deadline and not (tmp_path / "a" / "pairs").exists():
            time.sleep(0.5)  # until the run is under way
        cli.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can clean up
        cli.wait(timeout=30)
        server = servers[0][0]
        deadline = time.monotonic() + 20
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), f"API server {server} outlived the killed CLI"
    finally:
        if cli.poll() is None:
            cli.kill()


@pytest.fixture
def repeated_header(tmp_path, tiny_model_dir, tiny_splits) -> list[str]:
    """`train` flags for a CSV whose header names `text` twice (the first is read), on the tiny model."""
    frame = pd.read_parquet(tiny_splits["train"])
    path = tmp_path / "train.csv"
    rows = "".join(f"{t},{lab},x\n" for t, lab in zip(frame.text, frame.label, strict=True))
    path.write_text("text,label,text\n" + rows, encoding="utf-8")
    return ["train", "--train-data", str(path), "--model", tiny_model_dir, "--artifacts-root",
            str(tmp_path / "artifacts"), "--args", '{"num_iterations": 2, "seed": 0}']


REPEATED = "train_data has more than one column named 'text' (positions [0, 2]); only the first of each is read"


def test_strict_stops_before_any_stage_with_exit_2_naming_the_finding(repeated_header, tmp_path, capsys):
    assert main([*repeated_header, "--strict"]) == 2
    err = capsys.readouterr().err  # Prefect's log of the failed plan task may come first
    # One line: the findings follow the colon, each after "- ".
    assert _error_lines(err) == ["setfit-pipeline: error: strict data checks found 1 problem(s); fix the data, or turn "
                                 f"strict off to train anyway: - {REPEATED} and the others are ignored. Rename or "
                                 "drop the extra column(s)"], err
    assert not (tmp_path / "artifacts").exists()


def test_without_strict_the_warning_is_printed_and_training_runs(repeated_header, capsys):
    assert main([*repeated_header, "--json"]) == 0
    out, err = capsys.readouterr()
    assert f"setfit-pipeline: warning: {REPEATED}" in err
    result = json.loads(out)  # stdout stays JSON
    assert result["stages"]["model"]["status"] == "computed" and result["warnings"][0]["check"] == "duplicate-columns"


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    """`setfit-pipeline artifacts ls ROOT | head`: the pipe closes before the command writes; no traceback, and
    the exit status a shell gives a command stopped by SIGPIPE."""
    process = subprocess.Popen([sys.executable, "-m", "setfit_pipeline.flows.cli", "artifacts", "ls", str(tmp_path)],
                               cwd=prefect_ops.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # long before the command has imported its modules and printed
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "BrokenPipeError" not in err and "Exception ignored" not in err

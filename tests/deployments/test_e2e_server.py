"""End to end on a real Prefect server and process worker, both started and stopped by this test.

`prefect server start` on a free loopback port with its own PREFECT_HOME -> `setfit-pipeline deploy`
(work pool + the three deployments of deployments/prefect.yaml) -> a plain `prefect worker start --pool
setfit-process` (no SETFIT_PIPELINE_HOME: the pull step finds the checkout) with a 1 s poll ->
nightly-retrain (promoting to `production`), head-only-retrain and batch-predict through that alias,
triggered through the API -> the runs' UI artifacts read back through the client -> every process stopped
by PID (SIGINT, then escalation) and checked gone.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from setfit_pipeline.flows import prefect_ops

pytestmark = pytest.mark.e2e
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Server + deployments + worker; yields (env, tmp dir); stops everything afterwards."""
    tmp = tmp_path_factory.mktemp("prefect-e2e")
    with prefect_ops.local_server(tmp / "prefect-home") as env:
        deploy = _cli(["deploy"], env)
        assert deploy.returncode == 0, deploy.stderr + deploy.stdout
        assert "work pool 'setfit-process': created" in deploy.stdout
        # A plain Prefect worker, as every Prefect user starts one: no project variable (the pull step finds
        # the checkout), started elsewhere than the checkout. One torch thread: two threads spin-wait on a
        # 2-core machine that also runs the server. A 1 s poll instead of Prefect's 10 s.
        worker_env = {name: value for name, value in env.items() if name != "SETFIT_PIPELINE_HOME"}
        worker_env |= {"OMP_NUM_THREADS": "1", "PREFECT_WORKER_QUERY_SECONDS": "1",
                       "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
        with open(tmp / "worker.log", "wb") as log:
            worker = subprocess.Popen([*prefect_ops.prefect_command(), "worker", "start", "--pool", "setfit-process"],
                                      cwd=tmp, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            yield env, tmp
        finally:
            prefect_ops.stop(worker)
            _assert_group_gone(worker.pid)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "setfit_pipeline.flows.cli", *args], cwd=prefect_ops.REPO_ROOT,
                          env=env,
                          capture_output=True, text=True, timeout=180)


def _assert_group_gone(pgid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"processes of group {pgid} still running after stop()")


def _run(env: dict[str, str], deployment: str, parameters: dict) -> tuple:
    """Trigger a deployment through the API and wait for a final state; returns (flow run, artifacts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        created = run_deployment(deployment, parameters=parameters, timeout=0)  # as `prefect deployment run`
        with get_client(sync_client=True) as client:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not (run := client.read_flow_run(created.id)).state.is_final() and time.monotonic() < deadline:
                time.sleep(1)
            artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    # The run keeps the name it was created with (the one `prefect deployment run` prints).
    assert run.name == created.name, (created.name, run.name)
    # Keys are setfit-<deployment>-<dataset>-<kind>; index them by kind.
    name = deployment.split("/", 1)[1]
    assert all(a.key.startswith(f"setfit-{name}-") for a in artifacts if a.key), [a.key for a in artifacts]
    return run, {a.key.rsplit("-", 1)[-1]: a for a in artifacts if a.key}


def test_deployments_run_on_a_real_server_and_worker(stack, tiny_model_dir, tiny_splits, tmp_path):
    env, tmp = stack
    root = str(tmp / "artifacts")
    # The deployments' own defaults train on the demo data with MiniLM; the tiny model keeps CI fast.
    # Everything else (head_params of head-only-retrain, schedule, pool, pull step) is the deployment's.
    overrides = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"], "artifacts_root": root,
                 "model": tiny_model_dir, "args": {"num_iterations": 2, "seed": 0, "show_progress_bar": False}}

    nightly, artifacts = _run(env, "setfit-train/nightly-retrain", overrides)
    assert nightly.state.is_completed(), _failure(nightly, tmp)
    summary = artifacts["summary"].data
    assert "6 stages, 0 reused, 6 computed" in summary, summary
    assert "## Promotion to `production`: promoted" in summary, summary
    metrics = artifacts["metrics"].data
    assert "accuracy" in str(metrics) and "(all)" in str(metrics)

    head_only, artifacts = _run(env, "setfit-train/head-only-retrain", overrides)
    assert head_only.state.is_completed(), _failure(head_only, tmp)
    assert head_only.parameters["head_params"] == {"C": 0.5, "max_iter": 200}  # from prefect.yaml
    summary = artifacts["summary"].data
    for stage in ("pairs", "body", "embeddings"):
        assert f"| {stage} | reused |" in summary, summary
    assert "| head | computed |" in summary

    from setfit_core.artifacts import ArtifactStore

    models = ArtifactStore(root).list_stages("model")
    assert len(models) == 2  # one per head setting, sharing one body
    from setfit_core.artifacts.aliases import AliasStore

    # nightly-retrain promoted its model; head-only-retrain (an experiment) has no gate.
    production = AliasStore(ArtifactStore(root)).current("production")
    assert production.model_uri == nightly_model_uri(root, models) and production.version == 1
    output = tmp_path / "predictions.parquet"
    alias = f"{root}/aliases/production.json"  # the deployment's default, under this test's root
    predict, artifacts = _run(env, "setfit-predict/batch-predict", {"model": alias, "input_data": tiny_splits["test"],
                                                                    "output_data": str(output)})
    assert predict.state.is_completed(), _failure(predict, tmp)
    assert f"Model: `{production.model_uri}`, the model alias `production` pointed to" in artifacts["summary"].data
    predictions = pd.read_parquet(output)
    assert len(predictions) == len(pd.read_parquet(tiny_splits["test"]))
    assert set(predictions["predicted_label"]) <= {"positive", "negative"}


def nightly_model_uri(root: str, models) -> str:
    """The model without head_params (the head-only run's model records C=0.5 in its lineage label)."""
    from setfit_core.artifacts import ArtifactStore

    (nightly,) = [m for m in models if "C=0.5" not in m.metrics["lineage"]["label"]]
    return ArtifactStore(root).stage_uri("model", nightly.key)


def test_nightly_deployment_has_its_schedule_and_pull_step(stack):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, _ = stack
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("setfit-train/nightly-retrain")
        head_only = client.read_deployment_by_name("setfit-train/head-only-retrain")
        predict = client.read_deployment_by_name("setfit-predict/batch-predict")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert head_only.schedules == [] and predict.schedules == []
    assert predict.parameters["model"] == "artifacts/aliases/production.json"
    assert (nightly.parameters["promote_to"], head_only.parameters["promote_to"]) == ("production", None)
    for deployment in (nightly, head_only, predict):
        assert deployment.work_pool_name == "setfit-process"
        step = deployment.pull_steps[0]["setfit_pipeline.flows.checkout.set_checkout_directory"]
        assert step["directory"] == "{{ $SETFIT_PIPELINE_HOME }}"
        # One run at a time per deployment; a second one waits for a slot instead of training beside it.
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    # Same training args in both: the head-only run can only reuse the body if they match.
    assert nightly.parameters["args"] == head_only.parameters["args"]


def test_the_ui_shows_the_deployments_and_a_run(stack, tmp_path):
    """Headless Chromium renders the Prefect UI of this server (the README's screenshots come from here)."""
    if shutil.which("chromium") is None:
        pytest.skip("needs Debian's chromium (`apt-get install chromium`; .ci/run installs it)")
    spec = importlib.util.spec_from_file_location("screenshots", prefect_ops.REPO_ROOT / "docs" / "screenshots.py")
    screenshots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(screenshots)
    env, _ = stack
    ui = env["PREFECT_API_URL"].removesuffix("/api")
    dom = screenshots.rendered_dom(f"{ui}/deployments")
    for name in ("nightly-retrain", "head-only-retrain", "batch-predict"):
        assert name in dom, f"{name} not rendered on {ui}/deployments"
    png = screenshots.screenshot(f"{ui}/deployments", tmp_path / "deployments.png", "1200,600")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _failure(run, tmp: Path) -> str:
    log = (tmp / "worker.log").read_text(errors="replace")[-4000:]
    return f"flow run {run.name} ended {run.state.type}: {run.state.message}\n--- worker log ---\n{log}"


def test_a_data_updated_event_starts_nightly_retrain(stack, tiny_model_dir, tiny_splits, tmp_path):
    """`setfit-pipeline data-updated` emits setfit.data.updated; the deployment trigger of nightly-retrain starts a
    run on the event's data, which trains, promotes and records its history, while the schedule stays."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from setfit_core.artifacts import ArtifactStore
    from setfit_core.pipeline import dataset_label
    from setfit_core.pipeline.run_history import RunHistory

    env, tmp = stack
    train = tmp_path / "acme" / "train.parquet"  # a path no other run used: the run is found by it
    train.parent.mkdir()
    shutil.copy(tiny_splits["train"], train)
    root = str(tmp / "event-artifacts")
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("setfit-train/nightly-retrain")
        assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
        automations = client.read_resource_related_automations(f"prefect.deployment.{nightly.id}")
        assert [a.trigger.expect for a in automations] == [{"setfit.data.updated"}]
        # The deployment's defaults train MiniLM into the checkout's artifacts/: point them at the tiny model and
        # this test's root for the test, as an operator would edit them in the UI; restored afterwards.
        client.update_deployment(nightly.id, DeploymentUpdate(parameters={
            **nightly.parameters, "model": tiny_model_dir, "artifacts_root": root,
            "args": {"num_iterations": 2, "seed": 0, "show_progress_bar": False}}))
        try:
            emitted = _cli(["data-updated", "--dataset", "acme", "--uri", str(train), "--eval-uri",
                            tiny_splits["eval"]], env)
            assert emitted.returncode == 0, emitted.stderr
            assert "emitted setfit.data.updated for setfit.dataset.acme" in emitted.stdout
            run = _wait_for_run(client, DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id])), str(train))
        finally:
            client.update_deployment(nightly.id, DeploymentUpdate(parameters=nightly.parameters))
    assert run.state.is_completed(), _failure(run, tmp)
    assert (run.parameters["train_data"], run.parameters["eval_data"]) == (str(train), tiny_splits["eval"])
    (entry,) = RunHistory(ArtifactStore(root), "production", dataset_label(str(train))).last()
    assert entry.promoted and entry.deployment == "nightly-retrain"


def _wait_for_run(client, deployments, train_data: str):
    """The deployment's flow run on `train_data`, once it reached a final state."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = [r for r in client.read_flow_runs(deployment_filter=deployments)
                if r.parameters.get("train_data") == train_data]
        if runs and runs[0].state.is_final():
            return runs[0]
        time.sleep(1)
    pytest.fail(f"no finished run of nightly-retrain on {train_data} within {RUN_TIMEOUT_S} s")

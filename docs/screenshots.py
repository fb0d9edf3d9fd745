"""Screenshots of the Prefect UI for the README: a nightly run, its artifacts, the deployments page, the run history.

    apt-get install chromium        # Debian's package; the script looks for /usr/bin/chromium
    .venv/bin/python docs/screenshots.py [--out docs/img]

Starts a throw-away Prefect server (its own PREFECT_HOME under a temp dir), deploys
deployments/prefect.yaml, starts a process worker, triggers nightly-retrain and then
head-only-retrain on the demo data with the offline MiniLM (into a fresh artifacts root, so the
first run computes every stage and the second reuses the body), runs nightly-retrain once more (its
run history then has two rows), takes headless-Chromium screenshots, and stops everything.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from setfit_pipeline.flows import prefect_ops  # noqa: E402

# Without the background-networking flags Chromium keeps dialling out of a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--virtual-time-budget=15000"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    raise FileNotFoundError("Chromium not found: install Debian's package (`apt-get install chromium`)")


def screenshot(url: str, out: Path, size: str = "1400,900") -> Path:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    if not out.exists() or out.stat().st_size < 10_000:  # a blank page is a few KB
        raise RuntimeError(f"Chromium wrote no usable screenshot of {url} to {out}")
    return out


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran: what a user would see, as text a test can search."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                              check=True, capture_output=True, text=True, timeout=120)
    return done.stdout


def take(out_dir: Path, work: Path) -> list[Path]:
    from setfit_pipeline.flows.cli_services import write_default_demo_data

    data = write_default_demo_data()
    params = {"artifacts_root": str(work / "artifacts"), "train_data": str(data / "train.parquet"),
              "eval_data": str(data / "test.parquet")}
    with prefect_ops.local_server(work / "prefect-home") as env:
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        _with_api(env, prefect_ops.ensure_work_pool)
        prefect_ops.deploy_all(env)
        worker = prefect_ops.start_worker(env, poll_seconds=1, log_path=work / "worker.log")
        try:
            _with_api(env, _run, "setfit-train/nightly-retrain", params)
            head_only = _with_api(env, _run, "setfit-train/head-only-retrain", params)
            artifacts = _with_api(env, _artifact_ids, head_only)
            # A second nightly run (every stage reused) adds a second row to the alias's run history.
            nightly = _with_api(env, _run, "setfit-train/nightly-retrain", params)
            history = _with_api(env, _artifact_ids, nightly)
        finally:
            prefect_ops.stop(worker)
        out_dir.mkdir(parents=True, exist_ok=True)
        return [
            screenshot(f"{ui}/runs/flow-run/{head_only}", out_dir / "flow-run.png", "1400,1000"),
            screenshot(f"{ui}/artifacts/artifact/{artifacts['summary']}", out_dir / "run-summary.png"),
            screenshot(f"{ui}/artifacts/artifact/{artifacts['metrics']}", out_dir / "run-metrics.png", "1400,700"),
            screenshot(f"{ui}/deployments", out_dir / "deployments.png", "1400,500"),
            screenshot(f"{ui}/artifacts/artifact/{history['history']}", out_dir / "run-history.png", "1400,600"),
            screenshot(f"{ui}/artifacts/artifact/{history['trend']}", out_dir / "run-trend.png", "1400,600"),
        ]


def _with_api(env: dict[str, str], fn, *args):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        return fn(*args)


def _run(deployment: str, parameters: dict) -> str:
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, parameters=parameters, timeout=900, poll_interval=1)
    if not run.state.is_completed():
        raise RuntimeError(f"{deployment} run {run.name} ended {run.state.type}: {run.state.message}")
    return str(run.id)


def _artifact_ids(flow_run_id: str) -> dict[str, str]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    return {a.key.rsplit("-", 1)[-1]: str(a.id) for a in found if a.key}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    cli = parser.parse_args()
    chromium()  # fail before starting anything
    with tempfile.TemporaryDirectory(prefix="setfit-screenshots-") as work:
        for path in take(cli.out, Path(work)):
            print(path)


if __name__ == "__main__":
    main()

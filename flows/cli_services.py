"""`setfit-pipeline server`, `deploy` and `worker`: the commands that start or feed a Prefect server, each a thin
wrapper over `prefect_ops`."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from setfit_pipeline.flows import prefect_ops


def add_service_parsers(commands: Any) -> None:
    _add_server(commands)
    _add_deploy(commands)
    _add_worker(commands)


def _add_server(commands: Any) -> None:
    server = commands.add_parser(
        "server", help="start a local Prefect server and UI (foreground; Ctrl-C stops it)",
        description="Start `prefect server start` on a loopback address and print the UI and API URLs.",
    )
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    server.add_argument("--port", type=int, default=4200, help="port (default: 4200)")
    server.set_defaults(func=_server)


def _server(cli: argparse.Namespace) -> int:
    url = prefect_ops.api_url(cli.host, cli.port)
    process = prefect_ops.start_server(cli.host, cli.port, prefect_ops.child_env())
    try:
        prefect_ops.wait_healthy(url, process=process)
        print(f"Prefect UI:  http://{cli.host}:{cli.port}\nPrefect API: {url}\n\n"
              f"In other shells: export PREFECT_API_URL={url}\n"
              "then `setfit-pipeline deploy` and `setfit-pipeline worker`. Ctrl-C stops the server.", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        prefect_ops.stop(process)


def _add_deploy(commands: Any) -> None:
    deploy = commands.add_parser(
        "deploy", help="create the work pool if missing, then deploy everything in deployments/prefect.yaml",
        description="Needs PREFECT_API_URL. Writes the demo data the default parameters point at if it is "
        "missing, creates the process work pool, then runs `prefect --no-prompt deploy --all`.",
    )
    deploy.add_argument("--pool", default=prefect_ops.WORK_POOL, help=f"work pool (default: {prefect_ops.WORK_POOL})")
    deploy.set_defaults(func=_deploy)


def _deploy(cli: argparse.Namespace) -> int:
    url = prefect_ops.require_api_url("deploy")
    if cli.pool != prefect_ops.WORK_POOL:
        raise ValueError(f"--pool {cli.pool!r}: deployments/prefect.yaml names the pool {prefect_ops.WORK_POOL!r}; "
                         "edit its work_pools definition to use another one")
    write_default_demo_data()
    created = prefect_ops.ensure_work_pool(cli.pool)
    print(f"work pool {cli.pool!r}: {'created' if created else 'exists'} ({url})")
    done = prefect_ops.deploy_all(prefect_ops.child_env())
    print(done.stdout.strip())
    print(f"\nStart a worker: setfit-pipeline worker --pool {cli.pool}")
    return 0


def write_default_demo_data() -> Path:
    """The demo data the default deployment parameters point at (repo-relative), written if missing."""
    from setfit_core.demo_data import write_demo_data

    target = prefect_ops.REPO_ROOT / "artifacts" / "demo-data"
    if not (target / "train.parquet").exists():
        write_demo_data(target)
    return target


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="start a process worker that runs the deployments' flow runs (foreground)",
        description="`prefect worker start --type process` with SETFIT_PIPELINE_HOME set to this checkout, "
        "which the deployments' pull step changes into.",
    )
    worker.add_argument("--pool", default=prefect_ops.WORK_POOL, help=f"work pool (default: {prefect_ops.WORK_POOL})")
    worker.add_argument("--poll-seconds", type=float, help="how often to poll for runs (Prefect's default: 10)")
    worker.set_defaults(func=_worker)


def _worker(cli: argparse.Namespace) -> int:
    prefect_ops.require_api_url("worker")
    if cli.poll_seconds is not None and cli.poll_seconds <= 0:
        raise ValueError(f"--poll-seconds must be > 0; got {cli.poll_seconds}")
    env = prefect_ops.worker_env(os.environ, cli.poll_seconds)
    try:
        return subprocess.call(prefect_ops.worker_command(cli.pool), cwd=prefect_ops.REPO_ROOT, env=env)
    except KeyboardInterrupt:
        return 0

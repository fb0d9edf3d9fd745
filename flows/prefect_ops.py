"""The pieces of a Prefect deployment as child processes: server, work pool, deploy, worker.

Used by the `setfit-pipeline` CLI (`server`, `deploy`, `worker`), the end-to-end test and the
screenshot script, so all three start and stop things the same way. Everything here drives
Prefect's own CLI or API; nothing re-implements it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
WORK_POOL = "setfit-process"
# Offline defaults: no telemetry look-ups, no hub downloads. A user's own values win.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# What a flow run started by the CLI sets for itself and its temporary API server (a user's values win):
# telemetry look-ups fail noisily without a network, and are not wanted with one.
RUN_ENV = {name: OFFLINE_ENV[name] for name in ("DO_NOT_TRACK", "PREFECT_SERVER_ANALYTICS_ENABLED",
                                                  "TOKENIZERS_PARALLELISM")}


def apply_run_defaults() -> None:
    for name, value in RUN_ENV.items():
        os.environ.setdefault(name, value)


def prefect_command() -> list[str]:
    """The `prefect` CLI of this interpreter's environment (a venv need not be on PATH)."""
    exe = Path(sys.executable).parent / "prefect"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prefect"]


def child_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name, value in OFFLINE_ENV.items():
        env.setdefault(name, value)
    env.update(extra or {})
    return env


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def configured_api_url() -> str | None:
    """The API URL Prefect's settings point at (env or profile), or None for "ephemeral"."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def require_api_url(command: str) -> str:
    url = configured_api_url()
    if not url:
        raise ValueError(
            f"`setfit-pipeline {command}` needs a Prefect server: start one with `setfit-pipeline server`, then "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` (the URL the server printed) in this shell"
        )
    return url


def start_server(host: str, port: int, env: Mapping[str, str], log_path: Path | None = None) -> subprocess.Popen:
    """`prefect server start` as a child in its own process group (so it can be stopped whole)."""
    # The UI asks the server where its API is; without this it answers the default port 4200.
    env = {**env, "PREFECT_UI_API_URL": api_url(host, port)}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([*prefect_command(), "server", "start", "--host", host, "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            log.close()  # the child holds its own descriptor


@contextmanager
def local_server(home: Path, host: str = "127.0.0.1", port: int | None = None,
                 timeout_s: float = 120) -> Iterator[dict[str, str]]:
    """A throw-away server with its own PREFECT_HOME (database, logs); yields the env that points at it.

    For tests and the screenshot script: the server log is ``home/server.log``; the server and its
    children are stopped on exit.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    url = api_url(host, port)
    env = child_env({"PREFECT_HOME": str(home), "PREFECT_API_URL": url})
    process = start_server(host, port, env, home / "server.log")
    try:
        wait_healthy(url, timeout_s, process)
        yield env
    finally:
        stop(process)


@contextmanager
def temporary_api(timeout_s: float = 120) -> Iterator[str | None]:
    """A Prefect API for flows this process runs: the configured server if there is one (yields None), else a
    temporary one on a free loopback port, as Prefect's own ephemeral mode starts it but as a child that dies
    with this process (Linux): a CLI killed with SIGKILL leaves no API server behind. Yields its URL."""
    if configured_api_url():
        yield None
        return
    import prefect
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    port = free_port()
    url = api_url("127.0.0.1", port)
    # What Prefect's SubprocessASGIServer runs: the API without the UI, on this process's settings.
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "error", "--lifespan", "on"]
    process = subprocess.Popen(command, env=env, preexec_fn=_dies_with(os.getpid()))  # noqa: PLW1509
    try:
        wait_healthy(url, timeout_s, process)
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _send_pending()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _send_pending(timeout_s: float = 5) -> None:
    """Send the logs and events Prefect still queues for the API, while the temporary one still answers."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout_s)


def _dies_with(parent: int):
    """A preexec_fn: the child gets SIGTERM when `parent` dies, however it dies (Linux's PR_SET_PDEATHSIG;
    elsewhere nothing). Runs in the child between fork and exec."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True) if sys.platform == "linux" \
        else None

    def set_parent_death_signal() -> None:
        if libc is not None:
            libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl: no signal will come
                os._exit(1)

    return set_parent_death_signal


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout_s: float = 120, process: subprocess.Popen | None = None) -> None:
    """Poll ``<api>/health`` until it answers 200; fail early if the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {process.returncode} before {url} was healthy")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect API at {url} did not become healthy within {timeout_s:.0f} s")


def ensure_work_pool(name: str = WORK_POOL, pool_type: str = "process") -> bool:
    """Create the work pool if it is missing; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True
    if existing.type != pool_type:
        raise ValueError(f"work pool {name!r} exists with type {existing.type!r}, not {pool_type!r}; "
                         "delete it (`prefect work-pool delete`) or pass another --pool")
    return False


def deploy_all(env: Mapping[str, str], prefect_file: Path = PREFECT_FILE) -> subprocess.CompletedProcess:
    """`prefect --no-prompt deploy --all` from the repository root (no interactive git-clone proposal)."""
    command = [*prefect_command(), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=dict(env), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command[-5:])}` failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def worker_command(pool: str = WORK_POOL, limit: int | None = None) -> list[str]:
    command = [*prefect_command(), "worker", "start", "--pool", pool, "--type", "process"]
    return command + (["--limit", str(limit)] if limit else [])


def worker_env(env: Mapping[str, str], poll_seconds: float | None = None) -> dict[str, str]:
    """The worker's environment: SETFIT_PIPELINE_HOME for the pull step, optional short polling."""
    extra = {"SETFIT_PIPELINE_HOME": str(REPO_ROOT)}
    if poll_seconds is not None:  # Prefect's defaults are 10 s: fine for nightly runs, slow for tests
        extra |= {"PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds),
                  "PREFECT_WORKER_PREFETCH_SECONDS": "1",
                  "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(poll_seconds)))}
    return child_env(extra, base=env)


def start_worker(env: Mapping[str, str], pool: str = WORK_POOL, poll_seconds: float | None = None,
                 log_path: Path | None = None) -> subprocess.Popen:
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(worker_command(pool), cwd=REPO_ROOT, env=worker_env(env, poll_seconds),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            log.close()


def stop(process: subprocess.Popen, grace_s: Sequence[float] = (20, 10)) -> int:
    """Stop a child and its process group: SIGINT, then SIGTERM, then SIGKILL.

    SIGINT first because a Prefect worker may ignore SIGTERM for over 90 s; each
    signal gets its grace period before the next one.
    """
    for sig, wait_s in zip((signal.SIGINT, signal.SIGTERM), grace_s, strict=False):
        if process.poll() is not None:
            break
        _signal_group(process, sig)
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=30)
    _signal_group(process, signal.SIGKILL)  # children the leader left behind (uvicorn, flow runs)
    return process.returncode


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone

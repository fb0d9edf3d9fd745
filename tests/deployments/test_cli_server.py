"""`setfit-pipeline server`: starts a real Prefect server on loopback, prints its URLs, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from setfit_pipeline.flows import prefect_ops

pytestmark = pytest.mark.e2e


def _read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """Children started inside the block get SIGINT's default action, as a command in a terminal does.

    A test run started as a background job of a non-interactive shell (`nohup make test &`) has SIGINT
    ignored, children inherit that, and Python then installs no KeyboardInterrupt handler in them, so
    the Ctrl-C below would never reach the CLI. A handled signal is reset to its default at exec.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)


def test_server_prints_its_urls_and_stops_on_ctrl_c(tmp_path):
    port = prefect_ops.free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path)
    with _sigint_not_ignored():
        cli = subprocess.Popen([sys.executable, "-m", "setfit_pipeline.flows.cli", "server", "--port", str(port)],
                               cwd=prefect_ops.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(cli.stdout, lines), daemon=True).start()
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 150
        while not any("Prefect API:" in line for line in lines) and time.monotonic() < deadline:
            assert cli.poll() is None, "".join(lines)
            time.sleep(0.5)
        output = "".join(lines)
        assert f"Prefect UI:  http://127.0.0.1:{port}" in output and f"export PREFECT_API_URL={api}" in output
        assert _answers(api)
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        assert cli.wait(timeout=90) == 0
        assert not _answers(api), "the server still answers after the CLI exited"
    finally:
        prefect_ops.stop(cli)

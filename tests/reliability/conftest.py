"""Fault-test fixtures: pipeline jobs on the tiny model, child pipeline processes, stage listings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore

REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 240  # generous: two children share 2 cores with other test runs


@pytest.fixture(autouse=True)
def _isolated_cache(cache_home):
    """Children inherit XDG_CACHE_HOME, so their caches stay under tmp_path too."""


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread(single_torch_thread):
    """In-process pipeline runs (the S3 test) on one thread, like the children."""


@pytest.fixture
def job_file(tiny_model_dir, tiny_splits, tmp_path) -> Callable[..., Path]:
    """`job_file(**changes)`: a PipelineJob on the tiny model and splits, as a JSON file for a child."""

    def write(**changes) -> Path:
        job = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"],
               "artifacts_root": str(tmp_path / "artifacts"), "model": tiny_model_dir,
               "args": {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False},
               **changes}
        path = tmp_path / f"job-{len(list(tmp_path.glob('job-*.json')))}.json"
        path.write_text(json.dumps(job))
        return path

    return write


class Child:
    """One pipeline process (tests/reliability/_child.py); output goes to files, so no pipe fills up."""

    def __init__(self, job: Path, *extra: str) -> None:
        self.out, self.err = job.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.out"), None
        self.err = self.out.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability._child", str(job), *extra],
                                         cwd=REPO, stdout=out, stderr=err)

    def result(self, timeout: float = CHILD_TIMEOUT_S) -> dict:
        """Wait for a normal exit; {"stages": {stage: {"status", "key"}}, "metrics": {...}}."""
        code = self.proc.wait(timeout=timeout)
        assert code == 0, f"child exited {code}:\n{self.stderr_tail()}"
        return self.printed()

    def printed(self) -> dict:
        """What the child printed so far: the stages it finished (and metrics, if it got to the end)."""
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]
        stages = {line["stage"]: {"status": line["status"], "key": line["key"]} for line in lines if "stage" in line}
        return {"stages": stages, "metrics": next((line["metrics"] for line in lines if "metrics" in line), None)}

    def stderr_tail(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """`spawn(job, *args)` starts a child; every child still running is SIGKILLed at teardown."""
    children: list[Child] = []

    def start(job: Path, *extra: str) -> Child:
        children.append(Child(job, *extra))
        return children[-1]

    try:
        yield start
    finally:
        for child in children:
            child.kill()


def wait_for_file(path: Path, child: Child, timeout: float = CHILD_TIMEOUT_S) -> str:
    """Poll for `path` (written by the child); fail early with the child's stderr if it died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        assert child.proc.poll() is None, f"child exited {child.proc.returncode} first:\n{child.stderr_tail()}"
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s:\n{child.stderr_tail()}")


def assert_all_verify(store: ArtifactStore, stages: dict[str, dict]) -> None:
    """Every stage of a run result is published and every file matches its manifest."""
    for stage, result in stages.items():
        manifest = store.find(stage, result["key"])
        assert manifest is not None, f"{stage} {result['key']} is not a verified stage"
        assert store.verify(manifest) == [], stage


def leftovers(root: Path) -> list[Path]:
    """Temp and trash directories of crashed or losing writers, `<root>/<stage>/.tmp-*|.trash-*`."""
    return sorted(p for p in root.glob("*/.*") if p.name.startswith((".tmp-", ".trash-")))

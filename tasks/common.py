"""What every stage task shares: the run logger, the `PipelineRun` it works on, and UI artifacts."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError

from setfit_core.pipeline import PipelineJob, PipelineRun, StageResult


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger; a plain logger when a task body runs outside a run (`task.fn(...)` in tests)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("setfit_pipeline.tasks")


def in_run() -> bool:
    """UI artifacts belong to a run; a task body called directly (`task.fn`) creates none."""
    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def pipeline_run(job: dict[str, Any], plan: dict[str, Any]) -> PipelineRun:
    """The library run for a job, pinned to the data hashes and keys the planning task saw."""
    return PipelineRun(PipelineJob.from_dict(job), pinned=plan)


def parent_keys(run: PipelineRun, stage: str, *results: dict[str, Any]) -> dict[str, str]:
    """Keys of the given upstream results that `stage` reads (the flow passes them for lineage)."""
    parents = run.plan[stage].parents
    return {r["stage"]: r["key"] for r in results if r["stage"] in parents}


# Set by the CLI when its stderr is a terminal (and not --quiet): stages then draw tqdm bars there too. A
# context variable, so a flow run in another thread of the same process, or a worker's run, draws none.
TERMINAL_BARS: ContextVar[bool] = ContextVar("setfit_pipeline_terminal_bars", default=False)


class StageProgress:
    """Where a long stage's `ProgressFn` updates go: a Prefect progress artifact (created on the first update,
    so a reused stage makes no API call; then at most one update per `every` seconds: thousands would stall
    the local SQLite API on 2 cores), a line in the run's log at every 10% (with the rate and time left), and,
    from the CLI on a terminal, a tqdm bar."""

    def __init__(self, stage: str, key: str, unit: str, every: float = 1.0) -> None:
        self.stage, self.key, self.unit, self.every = stage, key, unit, every
        self.label = f"{stage} {key[:12]}"
        self.last = 0.0
        self.id = None
        self.started: float | None = None
        self.logged_tenths = 0
        self.bar = None

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        self._log(done, total, message, now)
        self._draw(done, total, message)
        if not in_run() or (done < total and now - self.last < self.every):
            return
        self.last = now
        progress, description = 100.0 * done / max(1, total), f"{self.label}: {message}"
        if self.id is None:
            self.id = create_progress_artifact(progress, description=description)
        else:
            update_progress_artifact(self.id, progress, description=description)

    def _log(self, done: int, total: int, message: str, now: float) -> None:
        tenths = 10 * done // max(1, total)
        if tenths <= self.logged_tenths:
            return
        self.logged_tenths = tenths
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        run_logger().info("%s: %d%% (%d/%d %ss), %s, %.1f %ss/s, %.0f s left", self.label, 10 * tenths, done, total,
                          self.unit, message, rate, self.unit, left)

    def _draw(self, done: int, total: int, message: str) -> None:
        if not TERMINAL_BARS.get():
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit=self.unit, leave=True)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(message, refresh=False)

    def finish(self, status: str) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.id is not None:
            update_progress_artifact(self.id, 100.0, description=f"{self.label}: {status}")


def finish_stage(result: StageResult, dataset: str) -> dict[str, Any]:
    """Log the outcome, link the stage's files in the UI, and return the plain result dict."""
    run_logger().info("%s %s: %s in %.2f s at %s", result.stage, result.key[:12], result.status, result.seconds,
                      result.uri)
    if not in_run():
        return result.to_dict()
    create_link_artifact(
        link=result.uri if "://" in result.uri else f"file://{result.uri}",
        link_text=f"{result.stage} {result.key[:12]} ({result.status})",
        key=f"setfit-{dataset}-{result.stage}",
        description=f"Stage directory of {result.stage} for {dataset}; manifest.json lists its files and sha256.",
    )
    return result.to_dict()

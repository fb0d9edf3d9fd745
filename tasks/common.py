"""What every stage task shares: the run logger, the `PipelineRun` it works on, and UI artifacts."""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

from prefect import get_run_logger
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
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


def finish_stage(result: StageResult, dataset: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Log the outcome, show where the stage's files are in the UI, and return the plain result dict."""
    run_logger().info("%s %s: %s in %.2f s at %s", result.stage, result.key[:12], result.status, result.seconds,
                      result.uri)
    if in_run():
        location_artifact(result.uri, f"{result.stage} {result.key[:12]} ({result.status})",
                          artifact_key(result.stage, dataset), storage_options, directory=True,
                          description=f"Stage directory of {result.stage} for {dataset}; manifest.json lists its "
                                      "files and sha256.")
    return result.to_dict()


def failure_artifact(dataset: str, stage: str, error: BaseException) -> None:
    """A short markdown artifact for a failed run: the stage it failed in and the one-line error, as the CLI
    prints it (the traceback is in the run's logs)."""
    line = " ".join(str(error).split()) or type(error).__name__
    create_markdown_artifact(
        f"### Failed in stage `{stage}`\n\n`setfit-pipeline: error: {line}`\n\n({type(error).__name__}; the run's "
        "logs hold the traceback.)",
        key=artifact_key("failure", dataset), description=f"Why this run of {dataset} failed, in one line",
    )


def run_label() -> str:
    """The deployment a run belongs to, or "adhoc" for a run started by hand (the CLI, Python)."""
    from prefect.runtime import deployment

    return deployment.name or "adhoc"


def artifact_key(kind: str, dataset: str) -> str:
    """`setfit-<deployment or adhoc>-<dataset>-<kind>`: the nightly deployment's latest metrics are never a
    head-only experiment's. Prefect keys take lowercase letters, digits and dashes."""
    key = f"setfit-{run_label()}-{dataset}-{kind}".lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", key)).strip("-")


def location_artifact(uri: str, text: str, key: str | None, storage_options: dict[str, Any] | None,
                      directory: bool, description: str) -> None:
    """A UI artifact saying where `uri` is: a link a browser opens (the AWS S3 console for an S3 URI on AWS),
    else the path as text (a file:// link to a worker's disk opens nothing; other S3 servers have other
    consoles, and a presigned URL would put the access key id in the UI)."""
    link = s3_console_url(uri, storage_options, directory)
    if link is not None:
        create_link_artifact(link=link, link_text=text, key=key, description=description)
    else:
        create_markdown_artifact(f"**{text}**: `{uri}`", key=key, description=description)


def s3_console_url(uri: str, storage_options: dict[str, Any] | None, directory: bool) -> str | None:
    """The AWS S3 console page of an s3:// URI (a prefix or an object), or None where that does not apply: not
    S3, or an S3 server other than AWS (AWS_ENDPOINT_URL or an endpoint_url in `storage_options`)."""
    options = storage_options or {}
    custom = (os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or options.get("endpoint_url")
              or (options.get("client_kwargs") or {}).get("endpoint_url"))
    if not uri.startswith("s3://") or custom:
        return None
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if directory:
        return f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}?prefix={quote(prefix.rstrip('/') + '/')}"
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={quote(prefix)}"

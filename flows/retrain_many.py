"""`retrain_many`: one `train_pipeline` subflow per training config (one classifier per customer, say).

    retrain_many(configs="runs.yaml", max_concurrent=2)
    retrain_many(configs=[...], task_runner="dask", dask_address="tcp://10.0.0.5:8786")

Each config runs as a task that starts `train_pipeline` as a subflow, on this flow's task runner: threads
(``max_concurrent`` at a time) or a Dask cluster that spreads them over machines. ``concurrency_limit`` names
a Prefect global concurrency limit that every run takes a slot of while it trains, which caps training across
all flows that use the same name (``prefect gcl create setfit-training --limit 2``).

A run that fails (bad data, an S3 error) fails only its own task: the others go on. The summary table artifact
lists every run's status, metric and promotion; when any failed, the flow run fails afterwards with a message
that says how many and which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner
from setfit_pipeline.flows.retrain_configs import load_configs
from setfit_pipeline.tasks.common import artifact_key, run_logger
from setfit_pipeline.tasks.dask_runner import ScaleOut, TaskRunnerName


class RetrainFailures(RuntimeError):
    """Some runs of `retrain_many` failed; `rows` holds every run's summary row."""

    def __init__(self, message: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.rows = rows


@flow(name="setfit-retrain-many", persist_result=False)
def retrain_many(
    configs: list[dict[str, Any]] | str,
    defaults: dict[str, Any] | None = None,
    max_concurrent: int = 2,
    concurrency_limit: str | None = None,
    task_runner: TaskRunnerName = "default",
    dask_address: str | None = None,
    dask_workers: int | None = None,
) -> dict[str, Any]:
    """Train every config in `configs` (a list of `train_pipeline` parameter mappings, or a YAML/JSON file of
    them; see `setfit_pipeline.flows.retrain_configs`), `defaults` filling what a config leaves out.

    Concurrency: `max_concurrent` runs at a time on threads (``task_runner="default"``), or one per worker of a
    local Dask cluster of `dask_workers` (default `max_concurrent`) single-threaded workers, or the workers of the
    scheduler at `dask_address`. `concurrency_limit`: a global concurrency limit that must exist on the server.

    Returns ``{"runs": [{"name", "status", "metric", "promoted", "reason", "model_uri", "error"}...],
    "completed": n, "failed": 0}``; with failures the flow run fails after the summary is published, and its
    message counts and names them.
    """
    runs = load_configs(configs, defaults)  # a broken config stops everything here, before any training
    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ValueError(f"max_concurrent must be an integer >= 1; got {max_concurrent!r}")
    scale = ScaleOut(task_runner, dask_address, dask_workers).validate()
    if concurrency_limit is not None:
        _check_limit(concurrency_limit)
    if scale.sharded:
        runner = ScaleOut(task_runner, dask_address, dask_workers or (None if dask_address else max_concurrent))
        task_runner_instance = runner.task_runner_instance()
    else:
        task_runner_instance = ThreadPoolTaskRunner(max_workers=max_concurrent)
    rows = train_all.with_options(task_runner=task_runner_instance)(runs, concurrency_limit)
    failed = [row for row in rows if row["status"] != "completed"]
    create_table_artifact(rows, key=artifact_key("summary", "retrain-many"),
                          description=f"{len(rows)} training runs: {len(rows) - len(failed)} completed, "
                                      f"{len(failed)} failed; metric on eval_data and the promotion gate's decision")
    if failed:
        names = ", ".join(f"{row['name']} ({row['error']})" for row in failed)
        raise RetrainFailures(f"{len(failed)} of {len(rows)} training runs failed: {names}", rows)
    return {"runs": rows, "completed": len(rows), "failed": 0}


@flow(name="setfit-retrain-batch", flow_run_name="retrain {runs[0][name]} and others", persist_result=False)
def train_all(runs: list[dict[str, Any]], concurrency_limit: str | None = None) -> list[dict[str, Any]]:
    """Every run as a task on this flow's task runner; one row per run, in the order given, failed or not."""
    futures = train_one.map(runs, unmapped(concurrency_limit))
    wait(futures)  # every run settles: a failure does not cancel the others
    rows = []
    for run, future in zip(runs, futures, strict=True):
        if future.state.is_completed():
            rows.append(future.result())
            continue
        error = future.state.message or "failed"
        if isinstance(exc := future.result(raise_on_failure=False), BaseException):
            error = " ".join(str(exc).split()) or type(exc).__name__
        rows.append(_row(run["name"], "failed", error=error))
        run_logger().error("%s failed: %s", run["name"], error)
    return rows


@task(name="train-one", task_run_name="train [{run[name]}]", cache_policy=NO_CACHE, persist_result=False)
def train_one(run: dict[str, Any], concurrency_limit: str | None = None) -> dict[str, Any]:
    """`train_pipeline` for one config, as a subflow of this task; its summary row."""
    # Imported here, not at module level: Dask pickles this task with what its globals reference, and a Flow
    # object pickles its function by value, without the module's names its type hints need (`Metric`).
    from setfit_pipeline.flows.train import train_pipeline

    params = {k: v for k, v in run.items() if k != "name"}
    with _slot(concurrency_limit):
        result = train_pipeline(**params)
    promotion = result["promotion"]
    metric = params.get("metric", "accuracy")
    value = result["metrics"].get("eval", {}).get(metric)
    return _row(run["name"], "completed", value, promotion, result["model_uri"])


def _row(name: str, status: str, value: float | None = None, promotion: dict[str, Any] | None = None,
         model_uri: str | None = None, error: str | None = None) -> dict[str, Any]:
    promotion = promotion or {}
    alias = promotion.get("alias")
    promoted = None if status != "completed" else (f"yes ({alias})" if promotion.get("promoted") else "no")
    return {"name": name, "status": status, "metric": round(value, 4) if isinstance(value, float) else value,
            "promoted": promoted, "reason": promotion.get("reason"), "model_uri": model_uri, "error": error}


@contextlib.contextmanager
def _slot(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(name, occupy=1, strict=True):  # checked to exist before any run started
        yield


def _check_limit(name: str) -> None:
    """A missing limit is an error now, not one failed run per config later."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    if not isinstance(name, str) or not name:
        raise ValueError(f"concurrency_limit must be the name of a global concurrency limit; got {name!r}")
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            raise ValueError(f"global concurrency limit {name!r} does not exist on this Prefect server; create it "
                             f"with `prefect gcl create {name} --limit 2` or pass concurrency_limit=None") from None

"""Scale-out options shared by `train_pipeline` and `predict_flow`: validated up front, then turned
into a `prefect_dask.DaskTaskRunner` for the sharded subflows.

prefect-dask is imported only when a Dask run starts, so the default path never needs it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

TaskRunnerName = Literal["default", "dask"]
TASK_RUNNERS = ("default", "dask")
# tcp://host:8786, tls://..., or a bare host:port (Dask's own forms for a scheduler address).
_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx|inproc)://\S+|[^\s:/]+:\d+)$")


@dataclass(frozen=True)
class ScaleOut:
    """How the embeddings stage / batch prediction run: in-process ("default") or sharded on Dask."""

    task_runner: str = "default"
    dask_address: str | None = None
    dask_workers: int | None = None
    shards: int | None = None

    @property
    def sharded(self) -> bool:
        return self.task_runner == "dask"

    def validate(self) -> ScaleOut:
        """Errors name the value and the fix; raised before any task runs."""
        if self.task_runner not in TASK_RUNNERS:
            raise ValueError(f"task_runner must be one of {list(TASK_RUNNERS)}; got {self.task_runner!r}")
        if not self.sharded:
            given = {k: v for k, v in self.dask_settings().items() if v is not None}
            if given:
                name, value = next(iter(given.items()))
                raise ValueError(f"{name}={value!r} only applies with task_runner='dask'; pass task_runner='dask' "
                                 f"or drop {name}")
            return self
        for name in ("dask_workers", "shards"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 (or None for one per worker); got {value!r}")
        if self.dask_address is not None and self.dask_workers is not None:
            raise ValueError(f"dask_workers={self.dask_workers!r} sizes a local cluster, but dask_address="
                             f"{self.dask_address!r} names an existing scheduler (its workers are used); drop one")
        if self.dask_address is not None and not _ADDRESS.match(str(self.dask_address)):
            raise ValueError(f"dask_address must be a Dask scheduler address like 'tcp://host:8786'; "
                             f"got {self.dask_address!r}")
        return self

    def dask_settings(self) -> dict[str, Any]:
        return {"dask_address": self.dask_address, "dask_workers": self.dask_workers, "shards": self.shards}

    def task_runner_instance(self) -> DaskTaskRunner:
        """A fresh runner per subflow run: an existing scheduler, or a LocalCluster torn down afterwards."""
        from prefect_dask import DaskTaskRunner

        if self.dask_address:
            return DaskTaskRunner(address=self.dask_address)
        # One single-threaded worker process per core: a shard is one torch job, and Dask's nanny already
        # pins OMP/MKL threads to 1 in each worker, so more threads per worker would sit idle.
        workers = self.dask_workers or os.cpu_count() or 1
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True})


def current_dask_workers() -> int:
    """Workers of the Dask cluster the current flow run uses (the default shard count).

    Asked through the flow's `DaskTaskRunner` client, so it works in a task run in the flow's process.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    client = getattr(getattr(context, "task_runner", None), "client", None)
    if client is None:
        raise RuntimeError("no Dask task runner in this flow run; pass shards=... or run under task_runner='dask'")
    return max(1, len(client.nthreads()))

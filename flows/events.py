"""The ``setfit.data.updated`` event: a dataset changed, retrain it.

`nightly-retrain` (deployments/prefect.yaml) has a deployment trigger on this event: each one starts a run with
``train_data`` and ``eval_data`` taken from the event's payload; the nightly schedule stays. Emit it with
`setfit-pipeline data-updated`, or from a data team's own flow with `prefect.events.emit_event`:

    emit_event(event="setfit.data.updated",
               resource={"prefect.resource.id": "setfit.dataset.acme", "setfit.dataset": "acme"},
               payload={"train_data": "s3://bucket/acme/train.parquet", "eval_data": "s3://bucket/acme/test.parquet"})
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

DATA_UPDATED = "setfit.data.updated"
RESOURCE_PREFIX = "setfit.dataset."
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def data_updated_event(dataset: str, train_data: str, eval_data: str | None) -> Any:
    """The event for `dataset` (a name: letters, digits, '.', '_', '-'); errors name the bad value."""
    from prefect.events import Event

    if not isinstance(dataset, str) or not _NAME.fullmatch(dataset):
        raise ValueError(f"--dataset must be a name of letters, digits, '.', '_' or '-' (e.g. 'acme' or "
                         f"'support-tickets'); got {dataset!r}")
    for flag, value in (("--uri", train_data), ("--eval-uri", eval_data)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{flag} must be a path or s3:// URI of the data; got {value!r}")
    return Event(event=DATA_UPDATED,
                 resource={"prefect.resource.id": f"{RESOURCE_PREFIX}{dataset}", "prefect.resource.name": dataset,
                           "setfit.dataset": dataset},
                 payload={"train_data": train_data, "eval_data": eval_data})


def emit_data_updated(dataset: str, train_data: str, eval_data: str | None) -> Any:
    """Send the event to the configured Prefect server and wait until it is sent: an error (no server, a
    refused connection) is raised here, where `emit_event`'s background sender would only log it."""
    from prefect.events import get_events_client

    event = data_updated_event(dataset, train_data, eval_data)

    async def send() -> None:
        async with get_events_client() as client:
            await client.emit(event)

    asyncio.run(send())
    return event

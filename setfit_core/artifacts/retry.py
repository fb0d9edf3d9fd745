"""Retry with exponential backoff for the store's remote calls (S3 uploads, downloads, reads).

Only transient failures are retried: the endpoint refused or dropped the connection, a timeout,
an HTTP 5xx or a throttling reply. Anything else (a missing object, denied access, a bad request)
fails at once, because trying again cannot fix it. After the last attempt the caller gets one
``StorageUnavailableError`` (an ``OSError``) that says what was being done (e.g. which stage URI)
and why it failed last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Error codes S3 answers when it is overloaded or briefly unavailable (besides any 5xx status).
_TRANSIENT_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                              "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"})


def _optional_transient_types() -> tuple[type[BaseException], ...]:
    """Connection-level error types of botocore/aiohttp, when installed (a local-only install has neither).

    A refused connection surfaces as botocore ``EndpointConnectionError`` (a ``ConnectionError``
    there, not Python's); a dropped one as ``ConnectionClosedError`` (an ``HTTPClientError``);
    aiohttp's own errors can leak through s3fs unwrapped.
    """
    types: list[type[BaseException]] = []
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        types += [BotoConnectionError, HTTPClientError]
    except ImportError:
        pass  # no S3 support installed: nothing of botocore's can be raised either
    try:
        from aiohttp import ClientConnectionError, ClientPayloadError

        types += [ClientConnectionError, ClientPayloadError]
    except ImportError:
        pass  # as above, for aiohttp
    return tuple(types)


class StorageUnavailableError(OSError):
    """The storage kept failing transiently (refused, dropped, timed out, 5xx) for every attempt."""


_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, *_optional_transient_types())


def causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and the exceptions it was raised from (s3fs wraps a 5xx ClientError in an OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_transient_reply(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)  # botocore ClientError
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return status >= 500 or response.get("Error", {}).get("Code") in _TRANSIENT_CODES


def is_transient(exc: BaseException) -> bool:
    """True for failures that another attempt may not meet: connection, timeout, 5xx, throttling."""
    return any(isinstance(e, _TRANSIENT_TYPES) or _is_transient_reply(e) for e in causes(exc))


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``base_delay_s``, then twice that, ... in between."""

    attempts: int = 4
    base_delay_s: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retry attempts must be an int >= 1; got {self.attempts!r}")
        if not self.base_delay_s >= 0:
            raise ValueError(f"retry base delay must be >= 0 seconds; got {self.base_delay_s!r}")

    def delay_s(self, failed_attempt: int) -> float:
        return self.base_delay_s * 2 ** (failed_attempt - 1)

    def call(self, fn: Callable[[], T], what: str, redact: Callable[[str], str] = str) -> T:
        """``fn()``, retried on transient errors; at last ``StorageUnavailableError``.

        Its text is ``could not {what} after {attempts} attempts: {type}: {cause}``.

        ``redact`` cleans the cause's text before it reaches a log line or the error: a botocore
        message can quote a request URL, and the caller knows which secrets to strip from it.
        """
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - filtered right below, everything else re-raised
                if not is_transient(exc):
                    raise
                cause = redact(f"{type(exc).__name__}: {exc}")
                if attempt == self.attempts:
                    # `from None`: the original's text (and its chain) is what we just redacted.
                    raise StorageUnavailableError(f"could not {what} after {self.attempts} attempts: {cause}") from None
                delay = self.delay_s(attempt)
                logger.warning("could not %s (attempt %d of %d, retrying in %.2f s): %s",
                               what, attempt, self.attempts, delay, cause)
                time.sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # keeps type checkers honest

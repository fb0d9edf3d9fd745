"""`RetryPolicy`: which errors are retried, the backoff, and the final error's text."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

import setfit_core.artifacts.retry as retry
from setfit_core.artifacts.retry import RetryPolicy, is_transient


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "PutObject")


def wrapped(cause: BaseException) -> OSError:
    """What s3fs raises for a ClientError it has no better type for: an OSError caused by it."""
    try:
        raise OSError(5, "Internal") from cause
    except OSError as exc:
        return exc


@pytest.mark.parametrize("exc", [EndpointConnectionError(endpoint_url="http://x"), ConnectionResetError(),
                                 TimeoutError(), client_error(503, "SlowDown"), wrapped(client_error(500, "X"))])
def test_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [FileNotFoundError("k"), PermissionError("denied"), client_error(403, "AccessDenied"),
                                 ValueError("bad")])
def test_not_transient(exc):
    assert not is_transient(exc)


def test_backoff_doubles_then_the_error_names_what_failed(monkeypatch, caplog):
    sleeps: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", sleeps.append)
    calls = []

    def fail():
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bucket/key?X-Amz-Credential=AKIA123")

    with pytest.raises(OSError, match=r"^could not upload stage s3://b/body/k after 4 attempts: "
                                      r"EndpointConnectionError: .*X-Amz-Credential=\*\*\*\"$") as info:
        RetryPolicy(4, 0.5).call(fail, "upload stage s3://b/body/k",
                                 redact=lambda t: t.replace("AKIA123", "***"))
    assert len(calls) == 4 and sleeps == [0.5, 1.0, 2.0]
    assert info.value.__cause__ is None and "AKIA123" not in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 3


def test_success_after_transient_errors_and_no_retry_of_permanent_ones(monkeypatch):
    monkeypatch.setattr(retry.time, "sleep", lambda s: None)
    outcomes = [TimeoutError("slow"), client_error(500, "InternalError"), "ok"]

    def flaky():
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert RetryPolicy(3, 0.1).call(flaky, "read x") == "ok"
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("no such key")

    with pytest.raises(FileNotFoundError, match="no such key"):
        RetryPolicy(4, 0.1).call(missing, "read x")
    assert calls == [1]


@pytest.mark.parametrize(("attempts", "delay", "match"), [(0, 0.5, "attempts must be an int >= 1; got 0"),
                                                          (2, -1.0, "base delay must be >= 0 seconds; got -1.0")])
def test_policy_validation(attempts, delay, match):
    with pytest.raises(ValueError, match=match):
        RetryPolicy(attempts, delay)

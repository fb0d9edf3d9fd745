"""S3 specifics of the artifact store: client defaults, credential redaction, object ages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from setfit_core.artifacts.retry import StorageUnavailableError, causes

# storage_options / client_kwargs entries and environment variables that hold S3 secrets: their
# values are cut out of any remote error text before it is logged or raised.
_SECRET_OPTIONS = ("key", "secret", "token", "username", "password",
                   "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_SIGNED_QUERY = re.compile(r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s\"']+", re.IGNORECASE)


def modified_time(info: dict[str, Any]) -> float:
    """An S3 object's LastModified as a POSIX time (0 when the listing has none)."""
    value = info.get("LastModified")
    return value.timestamp() if isinstance(value, datetime) else 0.0


def client_options(storage_options: dict[str, Any]) -> dict[str, Any]:
    """s3fs options with our defaults filled in; a value the user gave always wins."""
    options = dict(storage_options)
    # s3fs caches instances keyed on these options only, so a cached client could
    # still point at an old AWS_ENDPOINT_URL or a closed event loop.
    options.setdefault("skip_instance_cache", True)
    # Other processes publish stages; a cached listing would hide them.
    options.setdefault("use_listings_cache", False)
    config = dict(options.get("config_kwargs") or {})
    # botocore's own retries (legacy mode: 5 tries with backoff, ~8 s for a refused connection)
    # would run inside each of ours; ArtifactStore retries whole calls instead.
    config.setdefault("retries", {"total_max_attempts": 1})
    options["config_kwargs"] = config
    return options


def secret_values(options: dict[str, Any]) -> tuple[str, ...]:
    """Credential strings that could appear in a remote error, longest first (so none is cut in half)."""
    sources = [options, options.get("client_kwargs") or {}]
    values = {str(source[name]) for source in sources for name in _SECRET_OPTIONS if source.get(name)}
    values |= {os.environ[name] for name in _SECRET_ENV if os.environ.get(name)}
    return tuple(sorted(values, key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every credential value and signed-URL token replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return _SIGNED_QUERY.sub(r"\1***", text)



# botocore's exceptions for credentials it could not find or use; matched by name, so a local-only install
# (no botocore) imports this module too.
_CREDENTIAL_ERRORS = ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError",
                      "NoAuthTokenError", "UnauthorizedSSOTokenError")
_REFUSED_CREDENTIAL_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken")
CREDENTIALS_FIX = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run where an instance "
                   "role applies), or pass storage_options={'key': ..., 'secret': ...}")
ENDPOINT_FIX = ("is the S3 endpoint up, and is AWS_ENDPOINT_URL (or storage_options['endpoint_url']) right? Without "
                "either, AWS's own endpoint for AWS_DEFAULT_REGION is used")
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionClosedError")


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def explain(exc: BaseException, what: str, uri: str) -> Exception | None:
    """The error a user should see for a failed S3 call (`what`: "read train_data s3://b/x.parquet", ...) on
    `uri`, naming the setting to fix; None when `exc` is none of the usual causes (no credentials, refused
    credentials, an unreachable endpoint, no such bucket, access denied): the caller re-raises it as it is."""
    if isinstance(exc, StorageUnavailableError):  # the store's retries ran out: the endpoint is the suspect
        return StorageUnavailableError(f"{exc}; {ENDPOINT_FIX}")
    chain = list(causes(exc))
    names = {type(e).__name__ for e in chain}
    codes = {code for e in chain if (code := _error_code(e))}
    text = " ".join(str(e) for e in chain)
    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    if names & set(_CREDENTIAL_ERRORS):
        return PermissionError(f"no AWS credentials to {what}: {CREDENTIALS_FIX}")
    if names & set(_UNREACHABLE):
        return ConnectionError(f"could not reach S3 to {what}: {ENDPOINT_FIX}")
    if codes & set(_REFUSED_CREDENTIAL_CODES) or any(c in text for c in _REFUSED_CREDENTIAL_CODES):
        reason = ", ".join(sorted(codes)) or text[:80]
        return PermissionError(f"the AWS credentials were refused to {what} ({reason}); check "
                               "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage_options")
    if "NoSuchBucket" in codes or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return FileNotFoundError(f"bucket {bucket!r} does not exist (to {what}); create it or fix the s3:// URI "
                                 "(on another S3 server, set AWS_ENDPOINT_URL or storage_options['endpoint_url'])")
    if "AccessDenied" in codes or any(isinstance(e, PermissionError) for e in chain):
        return PermissionError(f"access denied to {what}: the credentials (AWS_* or storage_options) may not "
                               "do this; check the bucket policy or the IAM role")
    return None


@contextmanager
def explained(what: str, uri: str) -> Iterator[None]:
    """Inside, a failed S3 call on `uri` raises `explain`'s error (the original chained to it) where it knows
    one; local paths and unknown causes pass through unchanged."""
    try:
        yield
    except Exception as exc:
        better = explain(exc, what, uri) if str(uri).startswith("s3://") else None
        if better is None:
            raise
        better.explained = True  # type: ignore[attr-defined]  # see is_explained
        raise better from exc


def is_explained(exc: BaseException) -> bool:
    """Whether `exc` came from `explained`: its message already names the setting to fix, so callers that
    rewrap errors with their own context pass it on as it is."""
    return getattr(exc, "explained", False)


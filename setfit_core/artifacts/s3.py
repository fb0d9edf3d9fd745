"""S3 specifics of the artifact store: client defaults, credential redaction, object ages."""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

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


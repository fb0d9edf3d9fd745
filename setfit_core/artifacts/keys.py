"""Content keys for pipeline stages: canonical JSON, sha256 helpers, name validation.

A stage key is ``sha256(canonical JSON of {stage, config, parents, inputs, versions})``.
The canonical form must not depend on dict order, on tuple-vs-list, or on how a float
was spelled in the source, otherwise a cosmetic change would silently invalidate the
cache (or, worse, two different configs would share a key).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from enum import Enum
from typing import Any, BinaryIO

STAGE_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
# Bumped only if the way keys are derived changes, so old artifacts are never mistaken
# for new ones.
KEY_FORMAT = 1

_CHUNK = 1 << 20


def to_plain(obj: Any, path: str = "") -> Any:
    """Return ``obj`` as plain JSON values (dict/list/str/int/float/bool/None).

    Enums become their value, tuples become lists. Anything else (including NaN/inf,
    which JSON cannot represent portably, and non-string dict keys, which ``json``
    would silently stringify and so could collide) raises ``TypeError`` naming the
    dotted path of the offending value, e.g. ``config.args.foo``.
    """
    where = path or "<top level>"
    # Enum first: a str/int-mixin enum would otherwise pass as a str/int and hash
    # differently from the plain value users may write in a config file.
    if isinstance(obj, Enum):
        return to_plain(obj.value, path)
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise TypeError(f"{where} must be a finite number; got {obj!r}")
        # float() drops subclasses (numpy.float64) whose repr differs from float's.
        return float(obj)
    if isinstance(obj, dict):
        return _plain_dict(obj, path)
    if isinstance(obj, (list, tuple)):
        return [to_plain(item, f"{path}[{i}]") for i, item in enumerate(obj)]
    raise TypeError(
        f"{where} must be a JSON-able value (dict, list, tuple, str, int, float, bool, "
        f"None or Enum); got {type(obj).__name__}: {obj!r}"
    )


def _plain_dict(obj: dict, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in obj.items():
        key = raw_key.value if isinstance(raw_key, Enum) else raw_key
        if not isinstance(key, str):
            where = path or "<top level>"
            raise TypeError(f"keys of {where} must be str; got {raw_key!r}")
        out[key] = to_plain(value, f"{path}.{key}" if path else key)
    return out


def canonical_json(obj: Any) -> str:
    """Serialise ``obj`` deterministically: sorted keys, no whitespace, floats by repr.

    ``1e-05`` and ``0.00001`` are the same float, and ``json`` writes floats with
    ``float.__repr__`` (shortest round-tripping form), so they produce the same text.
    """
    return json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_fileobj(fileobj: BinaryIO, chunk: int = _CHUNK) -> str:
    """Hash an open binary stream in chunks, so large files never sit in memory."""
    digest = hashlib.sha256()
    while block := fileobj.read(chunk):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = _CHUNK) -> str:
    with open(path, "rb") as fileobj:
        return sha256_fileobj(fileobj, chunk)


def validate_stage_name(stage: str) -> str:
    """Stage names become directory names: keep them short, lowercase and path-safe."""
    if not isinstance(stage, str) or not STAGE_NAME_PATTERN.fullmatch(stage):
        raise ValueError(
            f"stage name must match ^{STAGE_NAME_PATTERN.pattern}$ "
            f"(lowercase letter, then up to 31 of [a-z0-9_]); got {stage!r}"
        )
    return stage


def validate_key(key: str) -> str:
    """Keys become directory names too; 64 lowercase hex cannot escape a directory."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"stage key must be 64 lowercase hex characters (a sha256); got {key!r}")
    return key


def validate_parents(parents: dict[str, str]) -> dict[str, str]:
    if not isinstance(parents, dict):
        raise ValueError(f"parents must be a dict of stage name -> key; got {parents!r}")
    for stage, key in parents.items():
        validate_stage_name(stage)
        validate_key(key)
    return parents


def stage_key(
    stage: str,
    config: dict[str, Any],
    parents: dict[str, str],
    inputs: dict[str, str],
    versions: dict[str, str],
) -> str:
    """Content key of a stage: changes whenever any input to the stage changes.

    ``inputs`` holds content hashes of input data files (not their paths), so moving a
    data file does not invalidate the cache but editing it does.
    """
    validate_stage_name(stage)
    validate_parents(parents)
    payload = {
        "key_format": KEY_FORMAT,
        "stage": stage,
        "config": config,
        "parents": parents,
        "inputs": inputs,
        "versions": versions,
    }
    return sha256_bytes(canonical_json(payload).encode("utf-8"))

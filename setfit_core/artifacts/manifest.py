"""The typed manifest that describes one published stage directory.

A manifest is read from storage that anyone with write access could have edited, so
``Manifest.from_json`` validates everything it returns: a file path that could point
outside its stage directory is rejected here, once, rather than checked at each use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from setfit_core.artifacts.keys import (
    KEY_PATTERN,
    to_plain,
    validate_key,
    validate_parents,
    validate_stage_name,
)

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def validate_relpath(path: str) -> str:
    """Accept only a relative POSIX path that stays inside its stage directory."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"file path must be a non-empty string; got {path!r}")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError(f"file path must be relative POSIX without backslashes or NUL; got {path!r}")
    segments = path.split("/")
    if any(seg in ("", ".", "..") for seg in segments):
        raise ValueError(f"file path must not contain empty, '.' or '..' segments; got {path!r}")
    if path == MANIFEST_NAME:
        raise ValueError(f"file path {path!r} is reserved for the manifest itself")
    return path


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative POSIX path inside the stage directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    stage: str
    key: str
    parents: dict[str, str]  # parent stage name -> key
    config: dict[str, Any]
    inputs: dict[str, str]  # input name -> content hash
    files: tuple[FileEntry, ...]
    metrics: dict[str, Any]
    timings: dict[str, float]  # phase -> seconds
    versions: dict[str, str]
    created_at: str  # ISO 8601, UTC
    format_version: int = FORMAT_VERSION

    def file(self, path: str) -> FileEntry:
        """The entry for ``path``; KeyError naming the listed files if absent."""
        for entry in self.files:
            if entry.path == path:
                return entry
        listed = [f.path for f in self.files]
        raise KeyError(f"{path!r} is not in manifest {self.stage}/{self.key}; listed: {listed}")

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _FIELDS}
        data["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        # to_plain names the offending path (e.g. metrics.f1) if a value is not JSON-able.
        return to_plain(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        expected_stage: str | None = None,
        expected_key: str | None = None,
        source: str = "<manifest>",
    ) -> Manifest:
        """Parse and validate; ValueError naming ``source`` and the bad value.

        ``expected_stage``/``expected_key`` are where the manifest was found: a manifest
        copied into another stage's directory must not vouch for that directory.
        """
        try:
            data = json.loads(text)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"manifest {source} is not valid JSON: {exc}") from None
        try:
            return _from_dict(data, expected_stage, expected_key)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"manifest {source} is invalid: {exc}") from None


_FIELDS = (
    "stage",
    "key",
    "parents",
    "config",
    "inputs",
    "files",
    "metrics",
    "timings",
    "versions",
    "created_at",
    "format_version",
)


def _from_dict(data: Any, expected_stage: str | None, expected_key: str | None) -> Manifest:
    if not isinstance(data, dict):
        raise ValueError(f"top level must be a JSON object; got {type(data).__name__}")
    to_plain(data)  # json.loads accepts NaN/Infinity; a manifest must not contain them
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        raise ValueError(f"missing fields {missing}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown fields {unknown}")
    if data["format_version"] != FORMAT_VERSION:
        raise ValueError(f"format_version must be {FORMAT_VERSION}; got {data['format_version']!r}")
    stage = validate_stage_name(data["stage"])
    key = validate_key(data["key"])
    if expected_stage is not None and stage != expected_stage:
        raise ValueError(f"stage is {stage!r} but the manifest was found under {expected_stage!r}")
    if expected_key is not None and key != expected_key:
        raise ValueError(f"key is {key!r} but the manifest was found under {expected_key!r}")
    for name in ("parents", "config", "inputs", "metrics", "timings", "versions"):
        _require(isinstance(data[name], dict), name, "an object", data[name])
    _require(isinstance(data["created_at"], str), "created_at", "a string", data["created_at"])
    _check_str_map(data["inputs"], "inputs")
    _check_str_map(data["versions"], "versions")
    for phase, seconds in data["timings"].items():
        _require(_is_number(seconds), f"timings.{phase}", "a number", seconds)
    return Manifest(
        stage=stage,
        key=key,
        parents=validate_parents(data["parents"]),
        config=data["config"],
        inputs=data["inputs"],
        files=_parse_files(data["files"]),
        metrics=data["metrics"],
        timings={phase: float(s) for phase, s in data["timings"].items()},
        versions=data["versions"],
        created_at=data["created_at"],
    )


def _parse_files(raw: Any) -> tuple[FileEntry, ...]:
    _require(isinstance(raw, list), "files", "a list", raw)
    entries: list[FileEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        _require(isinstance(item, dict), f"files[{i}]", "an object", item)
        _require(
            set(item) == {"path", "size", "sha256"}, f"files[{i}]", "an object with exactly path, size, sha256", item
        )
        path = validate_relpath(item["path"])
        _require(path not in seen, f"files[{i}].path", "unique", path)
        seen.add(path)
        size = item["size"]
        _require(type(size) is int and size >= 0, f"files[{i}].size", "an int >= 0", size)
        digest = item["sha256"]
        _require(
            isinstance(digest, str) and bool(KEY_PATTERN.fullmatch(digest)),
            f"files[{i}].sha256",
            "64 lowercase hex",
            digest,
        )
        entries.append(FileEntry(path=path, size=size, sha256=digest))
    return tuple(entries)


def _check_str_map(mapping: dict, name: str) -> None:
    for k, v in mapping.items():
        _require(isinstance(v, str), f"{name}.{k}", "a string", v)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(ok: bool, name: str, constraint: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{name} must be {constraint}; got {value!r}")

"""What an `ArtifactStore` holds, as `setfit-pipeline artifacts ls | show` prints it: one `StageInfo` per stage,
`StageDetails` with the verification result, key prefixes resolved to keys, and the ages (``7d``, ``12h``)
that `ls` prints and ``--older-than`` takes. `setfit_core.artifacts.gc` decides what to delete from these."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from setfit_core.artifacts.keys import validate_stage_name
from setfit_core.artifacts.manifest import Manifest
from setfit_core.artifacts.store import ArtifactStore

MIN_PREFIX = 8  # hex characters a key prefix needs, as `artifacts ls` prints keys
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

StageId = tuple[str, str]  # (stage, key)


@dataclass(frozen=True)
class StageInfo:
    """One stage as `ls` shows it; ``size`` sums the manifest's file sizes."""

    stage: str
    key: str
    size: int
    created_at: str
    parents: dict[str, str]
    n_files: int

    @classmethod
    def of(cls, manifest: Manifest) -> StageInfo:
        size = sum(entry.size for entry in manifest.files)
        return cls(manifest.stage, manifest.key, size, manifest.created_at, dict(manifest.parents), len(manifest.files))

    @property
    def id(self) -> StageId:
        return (self.stage, self.key)


@dataclass(frozen=True)
class StageDetails:
    """`show`: the manifest, where it lives, and what `ArtifactStore.verify` found wrong."""

    manifest: Manifest
    info: StageInfo
    uri: str
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return not self.problems


def list_artifacts(store: ArtifactStore, stage: str | None = None) -> list[StageInfo]:
    """Every stage (or one stage's keys) oldest first, so one run's stages read in pipeline order."""
    infos = [StageInfo.of(m) for m in store.list_stages(stage)]
    return sorted(infos, key=lambda info: (sort_time(info.created_at), info.stage, info.key))


def show_stage(store: ArtifactStore, stage: str, key_or_prefix: str) -> StageDetails:
    manifests = store.list_stages(validate_stage_name(stage))
    key = resolve_key([m.key for m in manifests], key_or_prefix, stage)
    manifest = next(m for m in manifests if m.key == key)
    problems = tuple(store.verify(manifest))
    return StageDetails(manifest, StageInfo.of(manifest), store.stage_uri(stage, key), problems)


def resolve_key(keys: Iterable[str], key_or_prefix: str, stage: str) -> str:
    """The one key in ``keys`` that is ``key_or_prefix`` or starts with it; ValueError otherwise."""
    text = key_or_prefix.lower() if isinstance(key_or_prefix, str) else ""
    if not re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},64}}", text):
        raise ValueError(
            f"a {stage} key must be {MIN_PREFIX} to 64 hex characters (a full key or a prefix as `artifacts ls` "
            f"prints it); got {key_or_prefix!r}"
        )
    matches = sorted(k for k in set(keys) if k.startswith(text))
    if not matches:
        raise ValueError(
            f"no {stage} stage has a key starting with {key_or_prefix!r}; "
            f"list them with `setfit-pipeline artifacts ls ROOT --stage {stage}`"
        )
    if len(matches) > 1:
        shown = ", ".join(k[:16] for k in matches)
        raise ValueError(f"{key_or_prefix!r} matches {len(matches)} {stage} stages ({shown}); give more characters")
    return matches[0]


def parse_duration(text: str, name: str = "older_than") -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s`` or ``0`` as a timedelta."""
    value = text.strip().lower() if isinstance(text, str) else ""
    if value == "0":
        return timedelta(0)
    if match := _DURATION.fullmatch(value):
        return timedelta(**{_UNITS[match[2]]: float(match[1])})
    raise ValueError(
        f"{name} must be a number followed by d, h, m or s (e.g. 7d, 12h, 30m) or 0 for no age limit; got {text!r}"
    )


def format_duration(age: timedelta) -> str:
    """The largest whole unit: 7d, 12h, 30m, 45s (as ``--older-than`` takes it)."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds else "0"


def parse_time(text: str) -> datetime | None:
    """A manifest's ``created_at`` as an aware datetime (a naive one is UTC); None when it does not parse."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def sort_time(text: str) -> datetime:
    # Unreadable times sort as newest, matching how gc protects them.
    return parse_time(text) or datetime.max.replace(tzinfo=timezone.utc)


__all__ = [
    "MIN_PREFIX",
    "StageDetails",
    "StageId",
    "StageInfo",
    "format_duration",
    "list_artifacts",
    "parse_duration",
    "parse_time",
    "resolve_key",
    "show_stage",
    "sort_time",
]

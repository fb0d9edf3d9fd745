"""Model aliases: a stable name (``production``) for the model a team uses, with its history.

Layout under the artifacts root, the same on local disk and on S3:

    aliases/<alias>.json                      the current record: model_uri, metrics, time, flow run id, ...
    aliases/<alias>.history/00000001.json     one file per change, never rewritten

Every change is a new history event numbered one past the version it was decided against, created
exclusively (a hard link of a finished temp file locally, a PUT with ``If-None-Match: *`` on S3: the
primitives the stage leases use). Of two runs that both compared against version 3, exactly one creates
event 4; the other learns it lost, and who won. That makes the event file the compare-and-swap, and the
history an append-only log that concurrent writers cannot corrupt (no file is ever appended to).

The record ``<alias>.json`` is a copy of the newest event, replaced atomically (``os.replace`` locally, a
whole-object PUT on S3) after the event exists. Readers follow newer events past the record, so a writer
that died between its event and its record write changes nothing they see; writers re-check after writing
and rewrite the record if a newer event appeared meanwhile, so it never goes backwards for long.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from setfit_core.artifacts.store import ArtifactStore

logger = logging.getLogger(__name__)

ALIASES_DIR = "aliases"
HISTORY_SUFFIX = ".history"
FORMAT_VERSION = 1
# No dots, no slashes: `<alias>.json` and `<alias>.history/` can never be mistaken for one another.
ALIAS_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ACTIONS = ("promote", "manual", "rollback")  # the gate of a training run, `models promote`, `models rollback`
_EVENT = re.compile(r"^(\d{8})\.json$")
# <root>/aliases/<alias>.json: what predict_flow and `setfit-pipeline predict` accept as a model.
_RECORD_URI = re.compile(r"^(?P<root>.+)/" + ALIASES_DIR + r"/(?P<alias>[^/]+)\.json$")


def validate_alias(alias: Any, name: str = "alias") -> str:
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        raise ValueError(f"{name} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or "
                         f"digit (e.g. 'production', 'staging'); got {alias!r}")
    return alias


@dataclass(frozen=True)
class AliasRecord:
    """One state of an alias: the model it points to and why. `version` counts the changes (1, 2, ...).

    `metrics`: the model's scores on the eval set that decided (``{"accuracy": 0.91, "macro_f1": ...}``),
    empty when nobody measured it. `metric` names the one the gate compared; `previous_metric` is the former
    holder's score on the same eval set. `rollback_of` is the model a rollback replaced.
    """

    alias: str
    version: int
    model_uri: str
    action: str
    reason: str
    previous_model_uri: str | None = None
    metric: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    previous_metric: float | None = None
    labels: list[str] | None = None
    flow_run_id: str | None = None
    time: str = ""
    event_id: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> AliasRecord:
        try:
            values = json.loads(text)
            if not isinstance(values, dict):
                raise TypeError("not a JSON object")
            known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
            record = cls(**known)
            validate_alias(record.alias)
            if type(record.version) is not int or record.version < 1 or not isinstance(record.model_uri, str):
                raise TypeError("version must be an int >= 1 and model_uri a string")
            if record.action not in ACTIONS:
                raise TypeError(f"action must be one of {list(ACTIONS)}")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"alias record {source} is not valid ({exc}); restore it from its history directory "
                             f"{_history_name(source)} (`setfit-pipeline models ls` reads the history)") from None
        return record

    @property
    def age_s(self) -> float | None:
        try:
            return (datetime.now(timezone.utc) - datetime.fromisoformat(self.time)).total_seconds()
        except ValueError:
            return None


@dataclass(frozen=True)
class AliasChange:
    """What `AliasStore.change` did: `won` when this change is now the alias's newest event; otherwise
    `current` is the record of the run that got there first."""

    won: bool
    current: AliasRecord


def _history_name(record_source: str) -> str:
    return record_source.removesuffix(".json") + HISTORY_SUFFIX + "/"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class AliasStore:
    """The aliases of one artifacts root; remote calls go through the store's retries and error messages."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._fs = store._fs  # same filesystem, options and retries as the stages (one package)
        self._dir = f"{store._base}/{ALIASES_DIR}"

    # -- reading ------------------------------------------------------------------

    def record_uri(self, alias: str) -> str:
        path = f"{self._dir}/{validate_alias(alias)}.json"
        return path if self.store.is_local else f"s3://{path}"

    def current(self, alias: str) -> AliasRecord | None:
        """The alias's newest state, or None when no model was ever given this alias."""
        record = self._read(f"{self._dir}/{validate_alias(alias)}.json")
        return self._follow(alias, record)

    def history(self, alias: str) -> list[AliasRecord]:
        """Every change, oldest first."""
        directory = self._history_dir(validate_alias(alias))
        versions = sorted(int(m[1]) for name in self._names(directory) if (m := _EVENT.match(name)))
        return [r for v in versions if (r := self._read(self._event_path(alias, v))) is not None]

    def aliases(self) -> list[str]:
        """Every alias with a record or a history, sorted."""
        found = set()
        for name in self._names(self._dir):
            stem = name.removesuffix(".json").removesuffix(HISTORY_SUFFIX)
            if stem != name and ALIAS_PATTERN.fullmatch(stem):
                found.add(stem)
        return sorted(found)

    def rollback_target(self, alias: str) -> tuple[AliasRecord, str]:
        """(current record, the model a rollback returns to): the holder before the current model was promoted,
        so repeated rollbacks walk back through promotions instead of swapping two models."""
        current = self.current(alias)
        if current is None:
            raise ValueError(f"alias {alias!r} does not exist under {self.store.root}; nothing to roll back")
        promotions = [r for r in self.history(alias) if r.action != "rollback" and r.model_uri == current.model_uri]
        target = promotions[-1].previous_model_uri if promotions else current.previous_model_uri
        if not target:
            raise ValueError(f"alias {alias!r} points to its first model ({current.model_uri}); there is no earlier "
                             "model to roll back to. Point it at another one with `setfit-pipeline models promote`")
        return current, target

    def held_models(self) -> dict[str, list[str]]:
        """Model URI -> why an alias needs it: the current holder, the previous one and the rollback target."""
        held: dict[str, list[str]] = {}
        for alias in self.aliases():
            current = self.current(alias)
            if current is None:
                continue
            held.setdefault(current.model_uri, []).append(f"held by alias {alias}")
            if current.previous_model_uri:
                held.setdefault(current.previous_model_uri, []).append(f"previous holder of alias {alias}")
            try:
                _, target = self.rollback_target(alias)
            except ValueError:
                continue
            if target != current.previous_model_uri:
                held.setdefault(target, []).append(f"rollback target of alias {alias}")
        return held

    # -- writing ------------------------------------------------------------------

    def change(self, record: AliasRecord, expected_version: int) -> AliasChange:
        """Make `record` the alias's state if it is still at `expected_version` (0: no record yet).

        `record.version` is set to ``expected_version + 1``. Returns ``won=False`` with the winner's record
        when another change got that version first: nothing of this one is written.
        """
        alias = validate_alias(record.alias)
        if record.action not in ACTIONS:
            raise ValueError(f"action must be one of {list(ACTIONS)}; got {record.action!r}")
        record = replace(record, version=expected_version + 1, time=record.time or _now(),
                         event_id=secrets.token_hex(8))
        if not self._create_event(alias, record):
            winner = self._read(self._event_path(alias, record.version))
            if winner is not None and winner.event_id == record.event_id:  # our retried PUT had landed
                self._publish_record(alias, record)
                return AliasChange(True, record)
            latest = self.current(alias)
            return AliasChange(False, latest if latest is not None else record)
        self._publish_record(alias, record)
        logger.info("alias %s -> %s (version %d, %s)", alias, record.model_uri, record.version, record.action)
        return AliasChange(True, record)

    # -- internals ----------------------------------------------------------------

    def _history_dir(self, alias: str) -> str:
        return f"{self._dir}/{alias}{HISTORY_SUFFIX}"

    def _event_path(self, alias: str, version: int) -> str:
        return f"{self._history_dir(alias)}/{version:08d}.json"

    def _uri(self, path: str) -> str:
        return path if self.store.is_local else f"s3://{path}"

    def _read(self, path: str) -> AliasRecord | None:
        try:
            data = self.store._remote(lambda: self._fs.cat_file(path), f"read {self._uri(path)}")
        except FileNotFoundError:
            return None
        return AliasRecord.from_json(data, self._uri(path))

    def _names(self, path: str) -> list[str]:
        try:
            entries = self.store._remote(lambda: self._fs.ls(path, detail=False), f"list {self._uri(path)}")
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def _follow(self, alias: str, record: AliasRecord | None) -> AliasRecord | None:
        """`record`, or a newer event that a writer created but whose record it did not write (yet)."""
        version = record.version if record is not None else 0
        while (newer := self._read(self._event_path(alias, version + 1))) is not None:
            record, version = newer, newer.version
        return record

    def _create_event(self, alias: str, record: AliasRecord) -> bool:
        """Create the history event of `record.version`, unless it exists; True when this call created it."""
        path, data = self._event_path(alias, record.version), record.to_json().encode("utf-8")
        if not self.store.is_local:
            try:
                self.store._remote(lambda: self._fs.pipe_file(path, data, mode="create"), f"write {self._uri(path)}")
                return True
            except FileExistsError:
                return False
        directory = Path(self._history_dir(alias))
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".tmp-{secrets.token_hex(6)}"
        _write_synced(tmp, data)
        try:
            os.link(tmp, path)  # atomic, and fails if the event exists: readers never see half an event
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _publish_record(self, alias: str, record: AliasRecord) -> None:
        """Write `<alias>.json`, then make sure it was not left behind by a newer event written meanwhile."""
        while True:
            self._write_record(alias, record)
            newest = self._follow(alias, record)
            if newest is None or newest.version == record.version:
                return
            record = newest

    def _write_record(self, alias: str, record: AliasRecord) -> None:
        path, data = f"{self._dir}/{alias}.json", record.to_json().encode("utf-8")
        if not self.store.is_local:  # an S3 PUT replaces the whole object at once
            self.store._remote(lambda: self._fs.pipe_file(path, data), f"write {self._uri(path)}")
            return
        tmp = Path(self._dir) / f".tmp-{alias}-{secrets.token_hex(6)}.json"
        try:
            _write_synced(tmp, data)
            os.replace(tmp, path)  # readers see the old record or the new one, never half of one
        finally:
            tmp.unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fileobj:
        fileobj.write(data)
        fileobj.flush()
        os.fsync(fileobj.fileno())


def parse_record_uri(uri: str) -> tuple[str, str] | None:
    """``(root, alias)`` for ``<root>/aliases/<alias>.json`` (local or ``s3://``), else None."""
    match = _RECORD_URI.match(str(uri))
    return (match["root"], validate_alias(match["alias"], "the alias in a record path")) if match else None


def resolve_record_uri(uri: str, storage_options: dict[str, Any] | None = None) -> AliasRecord | None:
    """The current record of an alias record path, or None when `uri` is no such path. A record path whose alias
    was never set is an error that says how to set it."""
    parsed = parse_record_uri(uri)
    if parsed is None:
        return None
    root, alias = parsed
    record = AliasStore(ArtifactStore(root, storage_options=storage_options)).current(alias)
    if record is None:
        raise FileNotFoundError(
            f"alias record {uri!r} does not exist: no model was promoted to alias {alias!r} under {root} yet. "
            f"Train with eval_data (train_pipeline promotes to promote_to={alias!r}), or run "
            f"`setfit-pipeline models promote MODEL_URI --alias {alias} --artifacts-root {root}`"
        )
    return record

"""The training runs of one dataset against one alias: what each scored and what the promotion gate decided.

Layout, beside the alias's own record and history (`setfit_core.artifacts.aliases`), local or on S3:

    aliases/<alias>.runs/<dataset>/20250101T020000123456Z-1a2b3c4d.json    one file per run, never rewritten

Alias names hold no dots, so ``<alias>.runs/`` can never be taken for an alias. Each run creates its own
file (a new name: a UTC time that sorts as text, then random hex), so two runs finishing at once never
write the same object, and nothing is ever appended to: the log cannot be corrupted by concurrent writers.
A local file is written to a temp name and renamed; an S3 PUT lands whole. Readers list the directory and
read the newest `limit` entries.

The Prefect UI's history table and trend chart (`history_rows`, `trend_markdown`) are rendered from here,
so they survive across flow runs, servers and machines: they live with the models, not in Prefect's database.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from setfit_core.artifacts.aliases import ALIASES_DIR, validate_alias
from setfit_core.artifacts.store import ArtifactStore

logger = logging.getLogger(__name__)

RUNS_SUFFIX = ".runs"
HISTORY_ROWS = 30
_ENTRY = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}\.json$")
_DATASET = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_BLOCKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class RunEntry:
    """One training run as the history shows it. `value` is the run's `metric` on its eval set, `probe` the
    frozen-probe baseline's on the same set (None where not measured), `promoted`/`reason` the gate's
    decision, `previous_value` the alias holder's score, re-measured on the same set."""

    time: str
    dataset: str
    alias: str
    model_uri: str
    metric: str
    value: float | None
    probe: float | None
    promoted: bool
    reason: str
    previous_value: float | None = None
    flow_run_id: str | None = None
    deployment: str | None = None

    @property
    def model_key(self) -> str:
        return self.model_uri.rstrip("/").rsplit("/", 1)[-1]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunEntry:
        values = json.loads(text)
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


def run_entry(dataset: str, promotion: dict[str, Any], eval_metrics: dict[str, Any] | None, metric: str,
              flow_run_id: str | None = None, deployment: str | None = None) -> RunEntry:
    """The entry of a finished run from its promotion result and its evaluation stage's ``metrics["eval"]``."""
    metrics = eval_metrics or {}
    value = promotion.get("metric")
    if value is None and isinstance(metrics.get(metric), (int, float)):
        value = metrics[metric]
    probe = (metrics.get("probe") or {}).get(metric)
    return RunEntry(time=datetime.now(timezone.utc).isoformat(), dataset=dataset, alias=promotion["alias"],
                    model_uri=promotion["model_uri"], metric=metric, value=value, probe=probe,
                    promoted=bool(promotion["promoted"]), reason=promotion["reason"],
                    previous_value=promotion.get("previous_metric"), flow_run_id=flow_run_id, deployment=deployment)


class RunHistory:
    """The runs of `dataset` (a `dataset_label`) against `alias` under one artifacts root."""

    def __init__(self, store: ArtifactStore, alias: str, dataset: str) -> None:
        if not isinstance(dataset, str) or not _DATASET.fullmatch(dataset):
            raise ValueError(f"dataset must be a label of lowercase letters, digits and '-' (as dataset_label "
                             f"gives it, e.g. 'sst2-train'); got {dataset!r}")
        self.store, self.alias, self.dataset = store, validate_alias(alias), dataset
        self._dir = f"{store._base}/{ALIASES_DIR}/{alias}{RUNS_SUFFIX}/{dataset}"

    @property
    def uri(self) -> str:
        return self._dir if self.store.is_local else f"s3://{self._dir}"

    def append(self, entry: RunEntry) -> str:
        """Write `entry` as a new file; returns its URI. Never touches another run's file."""
        if (entry.alias, entry.dataset) != (self.alias, self.dataset):
            raise ValueError(f"entry is for alias {entry.alias!r}, dataset {entry.dataset!r}; this history is "
                             f"alias {self.alias!r}, dataset {self.dataset!r}")
        stamp = datetime.fromisoformat(entry.time).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path, data = f"{self._dir}/{stamp}-{secrets.token_hex(4)}.json", entry.to_json().encode("utf-8")
        if self.store.is_local:
            Path(self._dir).mkdir(parents=True, exist_ok=True)
            tmp = Path(self._dir) / f".tmp-{secrets.token_hex(6)}"
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)  # readers see the whole entry or none of it
            finally:
                tmp.unlink(missing_ok=True)
        else:
            fs = self.store._fs
            self.store._remote(lambda: fs.pipe_file(path, data), f"write s3://{path}")
        return path if self.store.is_local else f"s3://{path}"

    def last(self, limit: int = HISTORY_ROWS) -> list[RunEntry]:
        """The newest `limit` runs, oldest first."""
        fs = self.store._fs
        try:
            names = self.store._remote(lambda: fs.ls(self._dir, detail=False), f"list {self.uri}")
        except (FileNotFoundError, NotADirectoryError):
            return []
        newest = sorted(n.rstrip("/").rsplit("/", 1)[-1] for n in names
                        if _ENTRY.match(n.rstrip("/").rsplit("/", 1)[-1]))[-limit:]
        entries = []
        for name in newest:
            path = f"{self._dir}/{name}"
            data = self.store._remote(lambda p=path: fs.cat_file(p), f"read {self.uri}/{name}")
            try:
                entries.append(RunEntry.from_json(data))
            except (ValueError, TypeError) as exc:  # written whole, so only a hand edit gets here: say which file
                logger.warning("skipping run history entry %s/%s: not a valid entry (%s)", self.uri, name, exc)
        return entries


def history_rows(entries: list[RunEntry]) -> list[dict[str, Any]]:
    """Rows of the UI table, newest first: date, model key, metric, probe baseline, promoted, reason."""
    rows = []
    for e in reversed(entries):
        rows.append({"date": e.time[:19].replace("T", " ") + " UTC", "model": e.model_key[:12],
                     e.metric: _r(e.value), "probe": _r(e.probe), "alias before": _r(e.previous_value),
                     "promoted": "yes" if e.promoted else "no", "reason": e.reason,
                     "flow run": (e.flow_run_id or "")[:8], "deployment": e.deployment or "adhoc"})
    return rows


def sparkline(values: list[float | None]) -> str:
    """``▁▃▇█``: one block per value between the smallest and the largest; a gap for a run with no value."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    return "".join(" " if v is None else _BLOCKS[round((v - low) / span * 7) if span else 7] for v in values)


def trend_markdown(entries: list[RunEntry]) -> str:
    """The metric over the runs, oldest first: a sparkline, then one bar per run (text, so every markdown
    renderer shows it, the Prefect UI included) with the probe baseline and the gate's decision."""
    if not entries:
        return ""
    metric, alias, dataset = entries[-1].metric, entries[-1].alias, entries[-1].dataset
    values = [e.value for e in entries]
    lines = [f"# {metric} of `{dataset}` runs against alias `{alias}`", "",
             f"Last {len(entries)} runs, oldest first: `{sparkline(values)}`", "",
             f"| date | model | {metric} | | probe | promoted |", "|---|---|---:|---|---:|---|"]
    for e in entries:
        bar = "█" * round(20 * e.value) if e.value is not None else ""
        lines.append(f"| {e.time[:16].replace('T', ' ')} | `{e.model_key[:12]}` | {_cell(e.value)} | `{bar}` "
                     f"| {_cell(e.probe)} | {'**yes**' if e.promoted else 'no'} |")
    promoted = sum(e.promoted for e in entries)
    lines += ["", f"{promoted} of {len(entries)} runs promoted. Bars: 20 blocks = 1.0. The probe is the base model's "
              "untouched body with the same head."]
    return "\n".join(lines) + "\n"


def _cell(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "–"


def _r(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None else None

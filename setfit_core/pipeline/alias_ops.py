"""Aliases by hand: point an alias at a model, roll it back, list them (`setfit-pipeline models ...`).

Both changes go through `AliasStore.change`, so they are in the alias's history like a training run's
promotion, and a change that raced another one fails instead of overwriting it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasRecord, AliasStore, validate_alias
from setfit_core.pipeline.batch_predict import resolve_model_uri

_MODEL_STAGE = re.compile(r"^(?P<root>.+)/model/(?P<key>[0-9a-f]{64})/?$")


@dataclass(frozen=True)
class AliasRow:
    """One line of `models ls`."""

    record: AliasRecord
    metric: str  # "accuracy 0.9125", or "-" when nobody measured the model
    age_s: float | None


def list_aliases(root: str, storage_options: Mapping[str, Any] | None = None) -> list[AliasRow]:
    aliases = AliasStore(ArtifactStore(root, storage_options=dict(storage_options or {})))
    rows = []
    for alias in aliases.aliases():
        record = aliases.current(alias)
        if record is not None:
            rows.append(AliasRow(record, _metric_text(record), record.age_s))
    return rows


def promote_by_hand(model: str, alias: str, root: str | None = None,
                    storage_options: Mapping[str, Any] | None = None) -> tuple[AliasRecord, bool]:
    """Point `alias` at `model` (a model directory, ``<root>/model/<key or prefix>``) with no gate; returns
    (the alias's record, whether it changed). `root` defaults to the model stage's artifacts root."""
    validate_alias(alias)
    options = dict(storage_options or {})
    model = resolve_model_uri(model, options).rstrip("/")
    store = ArtifactStore(_root_of(model, root), storage_options=options)
    _check_model(store, model)
    aliases = AliasStore(store)
    current = aliases.current(alias)
    if current is not None and current.model_uri.rstrip("/") == model:
        return current, False
    metrics, metric, labels = _measured(store, model)
    record = AliasRecord(alias=alias, version=0, model_uri=model, action="manual",
                         reason="promoted by hand (setfit-pipeline models promote)", metric=metric, metrics=metrics,
                         labels=labels, previous_model_uri=current.model_uri if current else None)
    return _apply(aliases, record, current), True


def rollback(alias: str, root: str, storage_options: Mapping[str, Any] | None = None) -> AliasRecord:
    """Point `alias` back at the model it held before its current model was promoted."""
    store = ArtifactStore(root, storage_options=dict(storage_options or {}))
    aliases = AliasStore(store)
    current, target = aliases.rollback_target(validate_alias(alias))
    _check_model(store, target)
    earlier = [r for r in aliases.history(alias) if r.model_uri == target and r.metrics]
    measured = earlier[-1] if earlier else None
    record = AliasRecord(alias=alias, version=0, model_uri=target, action="rollback",
                         reason=f"rolled back from {current.model_uri} (setfit-pipeline models rollback)",
                         previous_model_uri=current.model_uri, metric=measured.metric if measured else None,
                         metrics=measured.metrics if measured else {}, labels=measured.labels if measured else None)
    return _apply(aliases, record, current)


def _apply(aliases: AliasStore, record: AliasRecord, current: AliasRecord | None) -> AliasRecord:
    change = aliases.change(record, current.version if current else 0)
    if not change.won:
        raise RuntimeError(f"alias {record.alias!r} changed while this command ran (now version "
                           f"{change.current.version}, {change.current.model_uri}); nothing was written. Check "
                           f"`setfit-pipeline models ls` and run the command again if it still applies")
    return change.current


def _root_of(model: str, root: str | None) -> str:
    if root:
        return root
    match = _MODEL_STAGE.match(model)
    if match is None:
        raise ValueError(f"model {model!r} is not a model stage (<root>/model/<key>), so its artifacts root is not "
                         "known; pass --artifacts-root ROOT (where the alias lives)")
    return match["root"]


def _check_model(store: ArtifactStore, model: str) -> None:
    """A model stage of `store` must be there and verify: an alias must never point at a broken model."""
    match = _MODEL_STAGE.match(model)
    if match is None or match["root"].rstrip("/") != store.root.rstrip("/"):
        return  # another directory: resolve_model_uri checked that a local one exists
    if store.find("model", match["key"]) is None:
        raise FileNotFoundError(f"model {model!r} is not a verified model stage (missing, deleted by gc, or "
                                "damaged); rerun the training job that made it, or pick another model")


def _measured(store: ArtifactStore, model: str) -> tuple[dict[str, Any], str | None, list[str] | None]:
    """(headline metrics, metric name, labels) of a model stage's newest evaluation (eval split, else test)."""
    match = _MODEL_STAGE.match(model)
    manifest = store.find("model", match["key"]) if match else None
    head = manifest.parents.get("head") if manifest else None
    evaluations = [m for m in store.list_stages("evaluation") if head and m.parents.get("head") == head]
    for evaluation in sorted(evaluations, key=lambda m: m.created_at, reverse=True):
        for split in ("eval", "test"):
            scores = evaluation.metrics.get(split)
            if isinstance(scores, dict) and isinstance(scores.get("metric"), str):
                name = scores["metric"]
                wanted = dict.fromkeys((name, "accuracy", "macro_f1"))
                headline = {k: scores[k] for k in wanted if isinstance(scores.get(k), (int, float))}
                return {**headline, "split": split}, name, [str(x) for x in scores.get("labels", [])] or None
    return {}, None, None


def _metric_text(record: AliasRecord) -> str:
    value = record.metrics.get(record.metric) if record.metric else None
    return f"{record.metric} {value:.4f}" if isinstance(value, (int, float)) else "-"

"""The promotion gate: after a training run, move an alias to the new model only if it is at least as good.

    gate = PromotionGate(alias="production", min_improvement=0.0, allow_label_change=False)
    result = promote_if_better(store, gate, candidate, eval_set, flow_run_id=...)
    result.promoted, result.reason

The comparison is on this run's eval set: the alias's current model is scored again on it (eval data can
change from one night to the next, so last night's number says nothing about tonight's data). The new
model's score is the evaluation stage's, the one the run reports. Rules, in order:

- no eval data: no promotion (nothing to compare on);
- no model holds the alias yet: promote;
- the alias already points to this model: nothing to change;
- the label set changed: no promotion unless `allow_label_change`, and the reason names the labels that
  appeared and vanished;
- promote when ``metric >= previous_metric + min_improvement``.

The alias moves by compare-and-swap on its version (`AliasStore.change`): if another run moved it after this
run read it, this run does not promote, and its reason names the winner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.aliases import AliasRecord, AliasStore, validate_alias
from setfit_core.metrics import compute_metric
from setfit_core.pipeline.batch_predict import fetch_model, load_predictor, predictions
from setfit_core.pipeline.data_io import load_split
from setfit_core.pipeline.job import PipelineJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionGate:
    """`alias`: the alias to promote to; `min_improvement`: how much better (in the metric's units) the new
    model must score than the current holder; `allow_label_change`: promote a model whose labels differ."""

    alias: str
    min_improvement: float = 0.0
    allow_label_change: bool = False

    def validate(self) -> PromotionGate:
        validate_alias(self.alias, "promote_to")
        value = self.min_improvement
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"min_improvement must be a finite number (the metric must rise by at least this "
                             f"much, e.g. 0.01; 0.0 promotes a tie); got {value!r}")
        if not isinstance(self.allow_label_change, bool):
            raise ValueError(f"allow_label_change must be true or false; got {self.allow_label_change!r}")
        return self


@dataclass(frozen=True)
class EvalSet:
    """This run's eval split, labels as ids into `names` (the new model's class names, as strings)."""

    texts: list[str]
    label_ids: np.ndarray
    names: list[str]


@dataclass(frozen=True)
class Candidate:
    """The model a run trained: where it is, its labels, and its scores on the eval split (None without one)."""

    model_uri: str
    metric_name: str
    labels: list[str]
    metrics: Mapping[str, Any] | None = None  # the evaluation stage's metrics of the eval split
    metric_kwargs: Mapping[str, Any] | None = None

    @property
    def metric(self) -> float | None:
        return None if self.metrics is None else float(self.metrics[self.metric_name])


@dataclass(frozen=True)
class PromotionResult:
    alias: str | None
    promoted: bool
    reason: str
    model_uri: str
    previous_model_uri: str | None = None
    metric: float | None = None
    previous_metric: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_eval_set(eval_data: str, names: Sequence[str], column_mapping: Mapping[str, str] | None = None,
                  storage_options: Mapping[str, Any] | None = None, expected_hash: str | None = None) -> EvalSet:
    """The eval split as the run saw it (`expected_hash`: the content hash its plan pinned)."""
    split = load_split(eval_data, "eval_data", column_mapping, storage_options)
    if expected_hash is not None and split.content_hash != expected_hash:
        raise RuntimeError(f"eval_data {eval_data!r} changed while the pipeline was running (content sha256 "
                           f"{expected_hash} when planned, {split.content_hash} now); rerun the pipeline")
    index = {name: i for i, name in enumerate(names)}
    ids = np.asarray([index[str(label)] for label in split.data.labels], dtype=np.int64)
    return EvalSet(list(split.data.texts), ids, list(names))


def score_model(model_uri: str, eval_set: EvalSet, metric: str, metric_kwargs: Mapping[str, Any] | None = None,
                storage_options: Mapping[str, Any] | None = None) -> tuple[list[str], float]:
    """(the model's class names, its `metric` on `eval_set`), predicting each text with the model itself.

    A prediction of a class the new model does not know is wrong; it is counted as some other known class, so
    the metric averages over the same classes as the evaluation stage's.
    """
    with fetch_model(model_uri, storage_options) as location:
        model = load_predictor(model_uri, location, None)
        ids, probs = predictions(model, eval_set.texts, batch_size=64)
        labels = model.labels if model.labels is not None else list(range(probs.shape[1]))
    names = [str(label) for label in labels]
    index = {name: i for i, name in enumerate(eval_set.names)}
    predicted = np.asarray([index.get(names[int(i)], -1) for i in ids], dtype=np.int64)
    unknown = predicted < 0
    predicted[unknown] = (eval_set.label_ids[unknown] + 1) % len(eval_set.names)
    value = compute_metric(metric, predicted, eval_set.label_ids, dict(metric_kwargs or {}))[metric]
    return names, float(value)


def label_change(new: Sequence[str], old: Sequence[str]) -> str | None:
    """``labels appeared: ['c']; vanished: ['b']``, or None when both sets are equal."""
    appeared, vanished = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    if not appeared and not vanished:
        return None
    parts = ([f"appeared: {appeared}"] if appeared else []) + ([f"vanished: {vanished}"] if vanished else [])
    return "labels " + "; ".join(parts)


def promote_if_better(store: ArtifactStore, gate: PromotionGate, candidate: Candidate, eval_set: EvalSet | None,
                      flow_run_id: str | None = None, storage_options: Mapping[str, Any] | None = None,
                      ) -> PromotionResult:
    """Compare `candidate` with the model `gate.alias` points to on `eval_set` and move the alias if it wins."""
    aliases, alias = AliasStore(store), gate.validate().alias
    new = candidate.model_uri
    if eval_set is None or candidate.metric is None:
        return PromotionResult(alias, False, f"no eval_data: the gate compares models on the run's eval set, so "
                               f"nothing was promoted; pass eval_data to promote to {alias!r}", new)
    current = aliases.current(alias)
    decision = _decide(gate, candidate, eval_set, current, storage_options)
    if not decision.promoted:
        return decision
    record = AliasRecord(alias=alias, version=0, model_uri=new, action="promote", reason=decision.reason,
                         previous_model_uri=decision.previous_model_uri, metric=candidate.metric_name,
                         metrics=_scores(candidate), previous_metric=decision.previous_metric,
                         labels=list(candidate.labels), flow_run_id=flow_run_id)
    change = aliases.change(record, current.version if current else 0)
    if change.won:
        return decision
    winner = change.current
    return PromotionResult(
        alias, False, f"lost a race: while this run compared against version {current.version if current else 0} of "
        f"alias {alias!r}, {_who(winner)} moved it to {winner.model_uri} (version {winner.version}); the alias "
        "keeps the winner's model. Rerun to compare against it", new, winner.model_uri, candidate.metric,
        decision.previous_metric)


def _decide(gate: PromotionGate, candidate: Candidate, eval_set: EvalSet, current: AliasRecord | None,
            storage_options: Mapping[str, Any] | None) -> PromotionResult:
    alias, new, metric = gate.alias, candidate.model_uri, candidate.metric
    name = candidate.metric_name
    if current is None:
        reason = f"promoted: first model for alias {alias!r} ({name} {metric:.4f} on eval_data)"
        return PromotionResult(alias, True, reason, new, None, metric, None)
    old = current.model_uri
    if old.rstrip("/") == new.rstrip("/"):
        return PromotionResult(alias, False, f"alias {alias!r} already points to this model", new, old, metric,
                               metric)
    try:
        old_labels, old_metric = score_model(old, eval_set, name, candidate.metric_kwargs, storage_options)
    except (OSError, ValueError) as exc:
        return PromotionResult(
            alias, False, f"could not score the model alias {alias!r} points to ({old}) on this run's eval set: "
            f"{' '.join(str(exc).split())}. Nothing was promoted; point the alias at a model that loads with "
            f"`setfit-pipeline models promote MODEL_URI --alias {alias}`", new, old, metric)
    change = label_change(candidate.labels, old_labels)
    if change is not None and not gate.allow_label_change:
        return PromotionResult(alias, False, f"the label set changed ({change}) since the model alias {alias!r} "
                               "points to; not promoted. Pass allow_label_change=True to promote a model with "
                               "other labels", new, old, metric, old_metric)
    needed = old_metric + gate.min_improvement
    compared = (f"{name} {metric:.4f} on this run's eval set, against {old_metric:.4f} for the current model"
                f" + min_improvement {gate.min_improvement:g}")
    if metric >= needed:
        allowed = f"; {change}, allowed by allow_label_change" if change else ""
        return PromotionResult(alias, True, f"promoted: {compared}{allowed}", new, old, metric, old_metric)
    return PromotionResult(alias, False, f"not promoted: {compared} = {needed:.4f}; the alias keeps {old}", new, old,
                           metric, old_metric)


def _scores(candidate: Candidate) -> dict[str, Any]:
    """The headline numbers of the eval split for the record (not the per-class tables)."""
    metrics = candidate.metrics or {}
    wanted = dict.fromkeys((candidate.metric_name, "accuracy", "macro_f1"))
    return {k: metrics[k] for k in wanted if isinstance(metrics.get(k), (int, float))}


def _who(record: AliasRecord) -> str:
    return f"flow run {record.flow_run_id}" if record.flow_run_id else f"a {record.action} at {record.time}"


def promote_run(job: PipelineJob, gate: PromotionGate, model_uri: str, eval_metrics: Mapping[str, Any] | None,
                eval_hash: str | None = None, flow_run_id: str | None = None) -> PromotionResult:
    """The gate for one training run of `job`: `eval_metrics` is its evaluation stage's ``metrics["eval"]``
    (None without eval_data), `eval_hash` the eval split's content hash its plan pinned."""
    store = ArtifactStore(job.artifacts_root, storage_options=job.storage_options)
    if eval_metrics is None or job.eval_data is None:
        candidate = Candidate(model_uri, job.metric, [])
        return promote_if_better(store, gate, candidate, None, flow_run_id, job.storage_options)
    names = [str(name) for name in eval_metrics["labels"]]
    candidate = Candidate(model_uri, job.metric, names, eval_metrics, job.metric_kwargs)
    eval_set = load_eval_set(job.eval_data, names, job.column_mapping, job.storage_options, eval_hash)
    return promote_if_better(store, gate, candidate, eval_set, flow_run_id, job.storage_options)

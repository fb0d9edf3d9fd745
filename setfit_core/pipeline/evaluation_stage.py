"""Stage 5, evaluation: metrics of the head on the eval and test splits.

The head predicts from the cached embeddings (streamed one row group at a time); the end-to-end
variant has its own fine-tuned body, so it loads the head stage's whole model and encodes the texts.
``metrics.json`` (and the manifest's ``metrics``) hold, per split, the metric asked for plus
accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix, and under ``probe``
the frozen-probe baseline's accuracy, macro-F1 and metric: the base model's untouched body with the same
(unfitted) head, or setfit's LogisticRegression for a differentiable head, fitted on the train split
(`setfit_core.probe`). `probe_comparisons` says where the model scored below it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.differentiable_head import SetFitHead
from setfit_core.metrics import classification_report, compute_metric
from setfit_core.model_io.body_loading import load_body
from setfit_core.model_io.setfit_format import load_saved_head, read_saved_config
from setfit_core.modeling import SetFitModel, build_sklearn_head
from setfit_core.pipeline.embeddings_stage import iter_split, read_labels
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import StageResult, find_or_compute, parent_dir
from setfit_core.probe import ProbeComparison, compare, probe_predictions

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def run_evaluation(
    store: ArtifactStore, spec: StageSpec, data: PipelineData | None = None, device: str | None = None,
    base_model: str | None = None,
) -> StageResult:
    """`data`: the run's texts, for the end-to-end variant (it encodes them again) and the probe. `base_model`
    (the job's model, whose body phase 1 started from): also score the frozen-probe baseline."""

    def compute(writer: StageWriter) -> None:
        if spec.config["needs_body"]:
            predictions = _predict_end_to_end(store, spec, data, device)
        else:
            predictions = _predict_from_embeddings(store, spec)
        names, per_split = predictions
        metric, metric_kwargs = spec.config["metric"], spec.config["metric_kwargs"]
        metrics = {split: score(metric, metric_kwargs, y_pred, y_true, names)
                   for split, (y_pred, y_true) in per_split.items()}
        if base_model is not None:
            for split, y_probe in _probe(store, spec, data, base_model, device).items():
                full = score(metric, metric_kwargs, y_probe, per_split[split][1], names)
                metrics[split]["probe"] = {k: full[k] for k in dict.fromkeys(("accuracy", "macro_f1", metric))}
            for comparison in probe_comparisons(metrics):
                if comparison.below:
                    logger.warning("%s", comparison.message())
        (writer.dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        writer.metrics.update(metrics)

    return find_or_compute(store, spec, compute)


def probe_comparisons(metrics: dict[str, dict[str, Any]]) -> list[ProbeComparison]:
    """Per split with a probe score: the model's and the probe's value of the metric asked for."""
    found = (compare(split, m["metric"], m, m["probe"]) for split, m in metrics.items() if "probe" in m)
    return [c for c in found if c is not None]


def _probe(store: ArtifactStore, spec: StageSpec, data: PipelineData | None, base_model: str,
           device: str | None) -> dict[str, np.ndarray]:
    """The frozen-probe baseline's predictions per evaluated split."""
    if data is None:
        raise RuntimeError("the frozen-probe baseline needs the run's data; pass data= to run_evaluation")
    head_dir = str(parent_dir(store, spec, "head"))
    trained = load_saved_head(head_dir, read_saved_config(head_dir), device="cpu", trust_pickle=False)
    # The model's own head settings, unfitted; a differentiable head: setfit's default head stands in.
    head = clone(trained) if isinstance(trained, BaseEstimator) else build_sklearn_head({}, None)
    encode = _ProbeEncoder(base_model, device)
    splits = {split: data.splits[split].texts for split in spec.config["splits"]}
    return probe_predictions(encode, head, data.train.texts, data.train.label_ids, splits)


class _ProbeEncoder:
    """The untouched base body's encodings, remembered per process: the probe's texts are the same for every
    head a sweep tries on one dataset, so its trials encode them (and load the base body) once, not once each.
    The newest few text sets are kept; a lock makes concurrent trials wait for one encoding instead of racing."""

    _cache: OrderedDict[tuple[str, str | None, str], np.ndarray] = OrderedDict()
    _lock = threading.Lock()
    keep = 8

    def __init__(self, base_model: str, device: str | None) -> None:
        self.base_model, self.device = base_model, device
        self._model: SetFitModel | None = None

    def __call__(self, texts: list[str]) -> np.ndarray:
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        key = (self.base_model, self.device, digest)
        with self._lock:
            if key not in self._cache:
                if self._model is None:
                    self._model = SetFitModel(load_body(self.base_model, device=self.device))
                self._cache[key] = np.asarray(self._model.encode(texts, batch_size=64), dtype=np.float32)
                while len(self._cache) > self.keep:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
            return self._cache[key]


def score(
    metric: str, metric_kwargs: dict[str, Any], y_pred: np.ndarray, y_true: np.ndarray, names: list[str]
) -> dict[str, Any]:
    report = classification_report(y_pred, y_true, names)
    return {"metric": metric, **compute_metric(metric, y_pred, y_true, metric_kwargs), **report, "rows": len(y_true)}


def label_names(labels: list[Any] | None, num_classes: int) -> list[str]:
    return [str(label) for label in labels] if labels is not None else [str(i) for i in range(num_classes)]


def predict_ids(head: Any, embeddings: np.ndarray) -> np.ndarray:
    """Class ids from a head (scikit-learn estimator or `SetFitHead`) for precomputed embeddings."""
    if isinstance(head, SetFitHead):
        return head.predict(torch.from_numpy(embeddings).to(head.device)).cpu().numpy()
    return np.asarray(head.predict(embeddings))


# (class names, {split: (predicted ids, true ids)})
Predictions = tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]


def _predict_from_embeddings(store: ArtifactStore, spec: StageSpec) -> Predictions:
    head_dir = parent_dir(store, spec, "head")
    head = load_saved_head(str(head_dir), read_saved_config(str(head_dir)), device="cpu", trust_pickle=False)
    embeddings_dir = parent_dir(store, spec, "embeddings")
    labels = read_labels(embeddings_dir)
    per_split = {}
    for split in spec.config["splits"]:
        pairs = [(predict_ids(head, x), y) for x, y in iter_split(embeddings_dir, split)]
        per_split[split] = (np.concatenate([p for p, _ in pairs]), np.concatenate([y for _, y in pairs]))
    return label_names(labels["labels"], labels["num_classes"]), per_split


def _predict_end_to_end(
    store: ArtifactStore, spec: StageSpec, data: PipelineData | None, device: str | None
) -> Predictions:
    if data is None or any(data.hashes.get(n) != h for n, h in spec.inputs.items()):
        raise RuntimeError("the end-to-end evaluation needs the eval/test data it was planned with; rerun")
    model = SetFitModel.from_pretrained(str(parent_dir(store, spec, "head")), device=device)
    per_split = {}
    for split in spec.config["splits"]:
        texts, y_true = data.splits[split].texts, data.splits[split].label_ids
        per_split[split] = (np.asarray(model.predict(texts, as_numpy=True, use_labels=False)), y_true)
    return label_names(data.labels, data.num_classes), per_split

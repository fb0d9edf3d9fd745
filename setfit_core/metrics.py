"""Evaluation metrics computed locally with scikit-learn (setfit loads them from the Hub, which fails offline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm

METRIC_NAMES = ("accuracy", "f1", "precision", "recall", "matthews_correlation")


def check_metric(metric: str | Callable) -> None:
    if callable(metric):
        return
    if metric not in METRIC_NAMES:
        raise ValueError(
            f"'metric' must be one of {list(METRIC_NAMES)} or a callable (y_pred, y_true, **metric_kwargs); "
            f"got {metric!r}"
        )


def _default_average(y_true: np.ndarray) -> str:
    if y_true.ndim == 2:
        return "micro"
    return "binary" if len(np.unique(y_true)) <= 2 and set(np.unique(y_true)) <= {0, 1} else "macro"


def compute_metric(
    metric: str | Callable, y_pred: np.ndarray, y_true: np.ndarray, metric_kwargs: dict[str, Any] | None = None
) -> dict[str, float]:
    """`{name: value}` for a metric name; a callable's dict as it is, its number as `{"metric": value}` (setfit's)."""
    kwargs = dict(metric_kwargs or {})
    if callable(metric):
        result = metric(y_pred, y_true, **kwargs)
        return result if isinstance(result, dict) else {"metric": float(result)}
    check_metric(metric)
    if metric == "accuracy":
        return {"accuracy": float(skm.accuracy_score(y_true, y_pred, **kwargs))}
    if metric == "matthews_correlation":
        return {"matthews_correlation": float(skm.matthews_corrcoef(y_true, y_pred, **kwargs))}
    kwargs.setdefault("average", _default_average(y_true))
    kwargs.setdefault("zero_division", 0)
    scorer = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}[metric]
    return {metric: float(scorer(y_true, y_pred, **kwargs))}


def classification_report(y_pred: np.ndarray, y_true: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    ids = list(range(len(names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "macro_f1": float(skm.f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "labels": list(names),
    }

"""JSON encoding of constructor parameters and labels.

Only values with a faithful JSON form are written; anything else (e.g. a RandomState) is dropped
with a warning, because it can only affect refitting, never the stored predictions.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from setfit_core.model_io.sklearn_head.formats import _LABEL_KINDS, _LABEL_SCALARS


class _Unencodable(Exception):
    """A value has no faithful JSON form (e.g. a RandomState instance)."""


def _encode_value(value: Any) -> Any:
    """Encode a parameter value as JSON; tuples/arrays become lists, dicts keep non-str keys."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        # JSON has no inf/nan (e.g. C=inf); tag them rather than emit non-standard JSON.
        return float(value) if math.isfinite(value) else {"__float__": repr(float(value))}
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [_encode_value(item) for item in value]
    if isinstance(value, dict):
        # JSON object keys are strings only; class_weight={0: 1.0} must keep its int keys.
        return {"__dict__": [[_encode_value(k), _encode_value(v)] for k, v in value.items()]}
    raise _Unencodable(type(value).__name__)


def _decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__float__"} and value["__float__"] in ("inf", "-inf", "nan"):
        return float(value["__float__"])
    if set(value) == {"__dict__"} and isinstance(value["__dict__"], list):
        return {_decode_value(k): _decode_value(v) for k, v in value["__dict__"]}
    raise ValueError(f"unrecognised encoded value {value!r}")


def _encode_params(estimator: BaseEstimator) -> tuple[dict[str, Any], list[str]]:
    """Constructor params as JSON; the wrapped `estimator` is saved separately as a template."""
    params: dict[str, Any] = {}
    dropped: list[str] = []
    for name, value in estimator.get_params(deep=False).items():
        if name == "estimator":
            continue
        try:
            params[name] = _encode_value(value)
        except _Unencodable:
            dropped.append(name)
    if dropped:
        # These only affect refitting (e.g. a RandomState object), never predictions.
        warnings.warn(
            f"{type(estimator).__name__} parameters {dropped} are not JSON-serialisable and are "
            "not saved; the loaded head uses their defaults.",
            UserWarning,
            stacklevel=2,
        )
    return params, dropped


def _encode_labels(labels: np.ndarray, what: str) -> dict[str, Any]:
    """Class labels / feature names go to JSON so string labels never need object tensors."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in _LABEL_KINDS:
        raise TypeError(f"cannot save {what} of dtype {labels.dtype} and shape {labels.shape}")
    values = labels.tolist()
    if labels.dtype.kind == "O" and not all(isinstance(v, _LABEL_SCALARS) for v in values):
        raise TypeError(f"cannot save {what}: object labels must be str, int, float or bool")
    return {"dtype": labels.dtype.str, "values": [_encode_value(v) for v in values]}

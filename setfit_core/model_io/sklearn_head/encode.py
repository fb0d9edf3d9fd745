"""Saving: turn a supported estimator tree into a JSON spec plus a dict of tensors.

Each estimator type has one saver; the tensors get dotted names that follow the tree
(`estimators.0.coef_`), so a spec node and its arrays can be matched up again on load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier

from setfit_core.model_io.sklearn_head.formats import (
    _TENSOR_KINDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
)
from setfit_core.model_io.sklearn_head.support import _check_supported, _existing_directory, _is_fitted
from setfit_core.model_io.sklearn_head.values import _encode_labels, _encode_params


def save_sklearn_head(estimator: Any, directory: str | os.PathLike) -> None:
    """Write HEAD_WEIGHTS_FILE + HEAD_SPEC_FILE into an existing directory."""
    _check_supported(estimator)
    directory = _existing_directory(directory)
    writer = _TensorWriter()
    spec = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "sklearn_version": sklearn.__version__,
        "estimator": _save_node(estimator, writer, prefix=""),
    }
    # Serialise before touching the disk so an unencodable value cannot leave half a head behind.
    # allow_nan=False keeps the file strict JSON; non-finite floats are tagged by _encode_value.
    spec_text = json.dumps(spec, indent=2, allow_nan=False)
    save_file(writer.tensors, str(directory / HEAD_WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
    (directory / HEAD_SPEC_FILE).write_text(spec_text + "\n", encoding="utf-8")


@dataclass
class _TensorWriter:
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, name: str, array: Any) -> dict[str, Any]:
        """Store an array widened to float64/int64; the JSON ref keeps the original dtype."""
        array = np.asarray(array)
        if array.dtype.kind not in _TENSOR_KINDS:
            raise TypeError(f"cannot store {name!r} of dtype {array.dtype} in safetensors")
        storage = np.float64 if array.dtype.kind == "f" else np.int64
        self.tensors[name] = np.ascontiguousarray(array, dtype=storage)
        return {"name": name, "shape": list(array.shape), "dtype": array.dtype.str}


def _save_node(estimator: BaseEstimator, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    saver = _SAVERS[type(estimator)]
    return saver(estimator, writer, prefix)


def _base_node(estimator: BaseEstimator) -> dict[str, Any]:
    params, dropped = _encode_params(estimator)
    node: dict[str, Any] = {"type": type(estimator).__name__, "params": params}
    if dropped:
        node["dropped_params"] = dropped
    node["fitted"] = _is_fitted(estimator)
    return node


def _add_feature_info(node: dict[str, Any], estimator: BaseEstimator) -> None:
    # validate_data(reset=False) checks both at predict time, so they must survive the round trip.
    node["n_features_in"] = int(estimator.n_features_in_)
    if hasattr(estimator, "feature_names_in_"):
        node["feature_names_in"] = _encode_labels(estimator.feature_names_in_, "feature_names_in_")


def _save_logistic(estimator: LogisticRegression, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    node = _base_node(estimator)
    if not node["fitted"]:
        return node
    node["classes"] = _encode_labels(estimator.classes_, "classes_")
    _add_feature_info(node, estimator)
    node["tensors"] = {
        attr: writer.add(prefix + attr, getattr(estimator, attr)) for attr in ("coef_", "intercept_", "n_iter_")
    }
    return node


def _save_constant(estimator: _ConstantPredictor, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "_ConstantPredictor", "fitted": True}
    _add_feature_info(node, estimator)
    node["tensors"] = {"y_": writer.add(prefix + "y_", estimator.y_)}
    return node


def _save_wrapper_base(estimator: BaseEstimator, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    """Fields shared by the three wrappers: params, template estimator, fitted links."""
    node = _base_node(estimator)
    # The template is what a refit would clone: only its params matter, even if it was fitted.
    template_params, _ = _encode_params(estimator.get_params(deep=False)["estimator"])
    node["estimator"] = {"type": "LogisticRegression", "params": template_params, "fitted": False}
    if node["fitted"]:
        _add_feature_info(node, estimator)
        node["estimators"] = [
            _save_node(sub, writer, f"{prefix}estimators.{i}.") for i, sub in enumerate(estimator.estimators_)
        ]
    return node


def _save_one_vs_rest(estimator: OneVsRestClassifier, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    node = _save_wrapper_base(estimator, writer, prefix)
    if node["fitted"]:
        binarizer = estimator.label_binarizer_
        node["classes"] = _encode_labels(estimator.classes_, "classes_")
        # predict() dispatches on y_type_ and maps indicator columns back through the binarizer.
        node["label_binarizer"] = {
            "neg_label": int(binarizer.neg_label),
            "pos_label": int(binarizer.pos_label),
            "sparse_output": bool(binarizer.sparse_output),
            "y_type": str(binarizer.y_type_),
            "sparse_input": bool(binarizer.sparse_input_),
        }
    return node


def _save_multi_output(estimator: MultiOutputClassifier, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    # classes_ is rebuilt from the links on load, exactly as MultiOutputClassifier.fit does.
    return _save_wrapper_base(estimator, writer, prefix)


def _save_chain(estimator: ClassifierChain, writer: _TensorWriter, prefix: str) -> dict[str, Any]:
    node = _save_wrapper_base(estimator, writer, prefix)
    if node["fitted"]:
        node["tensors"] = {"order_": writer.add(prefix + "order_", estimator.order_)}
        node["chain_method"] = str(getattr(estimator, "chain_method_", "predict"))
    return node


_SAVERS: dict[type, Callable[..., dict[str, Any]]] = {
    LogisticRegression: _save_logistic,
    _ConstantPredictor: _save_constant,
    OneVsRestClassifier: _save_one_vs_rest,
    MultiOutputClassifier: _save_multi_output,
    ClassifierChain: _save_chain,
}

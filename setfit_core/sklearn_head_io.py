"""Save and load scikit-learn classification heads without pickle.

setfit 1.x stores its scikit-learn head as `model_head.pkl` (a joblib pickle), and unpickling can
run arbitrary code. Here a fitted head is written as two files instead:

* `model_head.safetensors`: every fitted array (coefficients, intercepts, ...), stored as float64
  or int64 because safetensors has no object arrays;
* `model_head.json`: the structure — estimator types, constructor parameters, class labels,
  feature counts — and, for each array, its tensor name, shape and original dtype.

Loading rebuilds a real, fitted scikit-learn estimator from an allow-list of types, so `predict`,
`predict_proba` and `classes_` behave exactly as before saving. Supported heads are
`LogisticRegression` and the three multi-label wrappers SetFit builds around it for
`multi_target_strategy` ("one-vs-rest", "multi-output", "classifier-chain"). Unfitted heads of
those types are supported too (parameters only), since a SetFit model can be saved before training.

The pickle format is still available for setfit 1.x interop: writing it is safe, but loading it
needs an explicit `trust_pickle=True`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import joblib
import numpy as np
import sklearn
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "HEAD_SPEC_FILE",
    "HEAD_WEIGHTS_FILE",
    "PICKLE_HEAD_FILE",
    "UnsafeHeadError",
    "is_supported_sklearn_head",
    "load_pickle_head",
    "load_sklearn_head",
    "save_pickle_head",
    "save_sklearn_head",
]

HEAD_WEIGHTS_FILE = "model_head.safetensors"
HEAD_SPEC_FILE = "model_head.json"
PICKLE_HEAD_FILE = "model_head.pkl"

FORMAT_NAME = "setfit_core.sklearn_head"
FORMAT_VERSION = 1

# Dtype kinds we can round-trip: numbers go to safetensors, labels/names go to JSON.
_TENSOR_KINDS = "fiub"
_LABEL_KINDS = "fiubUO"
_LABEL_SCALARS = (str, int, float, bool)
# Methods ClassifierChain may feed down the chain (its `chain_method` constraint in sklearn 1.9).
_CHAIN_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
# LabelBinarizer.y_type_ values OneVsRestClassifier.fit can produce.
_OVR_Y_TYPES = ("binary", "multiclass", "multilabel-indicator")

_SUPPORTED_DESCRIPTION = (
    "sklearn.linear_model.LogisticRegression, and sklearn.multiclass.OneVsRestClassifier, "
    "sklearn.multioutput.MultiOutputClassifier or sklearn.multioutput.ClassifierChain wrapping a "
    "LogisticRegression"
)


class UnsafeHeadError(ValueError):
    """Raised instead of unpickling a head that the caller has not declared trusted."""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def is_supported_sklearn_head(estimator: Any) -> bool:
    """Whether `save_sklearn_head` can store `estimator` (fitted or not) without pickle."""
    try:
        _check_supported(estimator)
    except TypeError:
        return False
    return True


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


def load_sklearn_head(directory: str | os.PathLike) -> BaseEstimator:
    """Rebuild the estimator written by `save_sklearn_head`; never unpickles anything."""
    directory = Path(directory)
    spec_path = directory / HEAD_SPEC_FILE
    weights_path = directory / HEAD_WEIGHTS_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(_missing_spec_message(directory, spec_path))
    spec = _read_spec(spec_path)
    ctx = _LoadContext(spec_path, weights_path, _read_weights(weights_path))
    estimator = _load_node(ctx, spec["estimator"], "estimator", _TOP_LEVEL_LOADERS)
    ctx.check_all_used()
    return estimator


def save_pickle_head(estimator: Any, directory: str | os.PathLike) -> None:
    """Write setfit 1.x's `model_head.pkl` (joblib) for interop; writing a pickle is safe."""
    directory = _existing_directory(directory)
    joblib.dump(estimator, str(directory / PICKLE_HEAD_FILE))


def load_pickle_head(directory: str | os.PathLike, *, trust_pickle: bool = False) -> object:
    """Load setfit 1.x's `model_head.pkl`; refuses unless `trust_pickle=True`."""
    path = Path(directory) / PICKLE_HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {PICKLE_HEAD_FILE!r} in {directory}")
    if trust_pickle is not True:
        raise UnsafeHeadError(
            f"{directory} holds {PICKLE_HEAD_FILE!r}, a pickled scikit-learn head (setfit 1.x "
            "format). Unpickling can execute arbitrary code, so it is not loaded by default. "
            "Pass trust_pickle=True only if you trust the source of this file; otherwise load it "
            "once in a trusted environment and re-save it with setfit_core "
            f"(sklearn_head_io.save_sklearn_head) to get the safe {HEAD_WEIGHTS_FILE} + "
            f"{HEAD_SPEC_FILE} format."
        )
    return joblib.load(str(path))


# --------------------------------------------------------------------------------------------
# Support checks
# --------------------------------------------------------------------------------------------

_WRAPPER_TYPES = (OneVsRestClassifier, MultiOutputClassifier, ClassifierChain)


def _check_supported(estimator: Any) -> None:
    """Raise TypeError unless the whole estimator tree is made of allow-listed types."""
    if type(estimator) is LogisticRegression:
        return
    if type(estimator) not in _WRAPPER_TYPES:
        raise _unsupported(estimator)
    template = estimator.get_params(deep=False)["estimator"]
    if type(template) is not LogisticRegression:
        raise _unsupported(template, inside=estimator)
    # Constant label columns make OneVsRestClassifier hold _ConstantPredictor links; the other
    # wrappers never build them (LogisticRegression refuses a single-class column instead).
    allowed: tuple[type, ...] = (LogisticRegression,)
    if type(estimator) is OneVsRestClassifier:
        allowed = (LogisticRegression, _ConstantPredictor)
    for sub in getattr(estimator, "estimators_", []):
        if type(sub) not in allowed:
            raise _unsupported(sub, inside=estimator)


def _unsupported(estimator: Any, inside: Any = None) -> TypeError:
    where = f" (inside {_type_name(inside)})" if inside is not None else ""
    return TypeError(
        f"Cannot save a scikit-learn head of type {_type_name(estimator)}{where} without pickle. "
        f"Supported: {_SUPPORTED_DESCRIPTION}. If you really need this head, write it with "
        f"save_pickle_head (setfit 1.x's {PICKLE_HEAD_FILE}; loading it back then requires "
        "load_pickle_head(..., trust_pickle=True))."
    )


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _is_fitted(estimator: BaseEstimator) -> bool:
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def _existing_directory(directory: str | os.PathLike) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not an existing directory")
    return path


# --------------------------------------------------------------------------------------------
# JSON encoding of constructor parameters and labels
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _missing_spec_message(directory: Path, spec_path: Path) -> str:
    message = f"No scikit-learn head spec {spec_path}"
    if (directory / PICKLE_HEAD_FILE).is_file():
        message += (
            f"; the directory holds a pickled head ({PICKLE_HEAD_FILE}) instead: see "
            "load_pickle_head, which requires trust_pickle=True"
        )
    return message


def _read_spec(spec_path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{spec_path} is not valid JSON: {exc}") from exc
    if not isinstance(spec, dict) or spec.get("format") != FORMAT_NAME:
        raise ValueError(f"{spec_path} is not a {FORMAT_NAME} spec (missing or wrong 'format' field)")
    version = spec.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ValueError(
            f"{spec_path} has format_version {version!r}; this setfit_core reads versions up to {FORMAT_VERSION}"
        )
    if "estimator" not in spec:
        raise ValueError(f"{spec_path} has no 'estimator' entry")
    return spec


def _read_weights(weights_path: Path) -> dict[str, np.ndarray]:
    if not weights_path.is_file():
        raise FileNotFoundError(f"Missing scikit-learn head weights {weights_path}")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"Cannot read scikit-learn head weights {weights_path}: {exc}") from exc


@dataclass
class _LoadContext:
    """Paths for error messages plus the tensors, with bookkeeping of which were used."""

    spec_path: Path
    weights_path: Path
    tensors: dict[str, np.ndarray]
    used: set[str] = field(default_factory=set)

    def error(self, where: str, message: str) -> ValueError:
        return ValueError(f"Invalid scikit-learn head spec {self.spec_path} at {where}: {message}")

    def require(self, node: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if key not in node:
            raise self.error(where, f"missing field {key!r}")
        value = node[key]
        # bool is an int subclass; never accept it where a count is expected.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(where, f"field {key!r} has unexpected value {value!r}")
        return value

    def tensor(self, node: dict[str, Any], attr: str, where: str) -> np.ndarray:
        refs = self.require(node, "tensors", dict, where)
        ref = self.require(refs, attr, dict, f"{where}.tensors")
        name = self.require(ref, "name", str, f"{where}.tensors.{attr}")
        shape = tuple(self.require(ref, "shape", list, f"{where}.tensors.{attr}"))
        dtype = _parse_dtype(self, self.require(ref, "dtype", str, f"{where}.tensors.{attr}"), _TENSOR_KINDS, where)
        if name not in self.tensors:
            raise ValueError(f"{self.weights_path} is missing tensor {name!r} (needed by {self.spec_path})")
        array = self.tensors[name]
        if array.shape != shape:
            raise ValueError(
                f"Tensor {name!r} in {self.weights_path} has shape {array.shape}, "
                f"but {self.spec_path} expects {shape}"
            )
        storage = np.float64 if dtype.kind == "f" else np.int64
        if array.dtype != storage:
            raise ValueError(f"Tensor {name!r} in {self.weights_path} has dtype {array.dtype}, expected {storage}")
        self.used.add(name)
        return array.astype(dtype, copy=True)

    def check_all_used(self) -> None:
        # Extra tensors mean the weights and the spec come from different saves.
        extra = sorted(set(self.tensors) - self.used)
        if extra:
            raise ValueError(f"{self.weights_path} holds tensors {extra} that {self.spec_path} does not describe")


def _parse_dtype(ctx: _LoadContext, text: str, kinds: str, where: str) -> np.dtype:
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise ctx.error(where, f"unknown dtype {text!r}") from exc
    if dtype.kind not in kinds:
        raise ctx.error(where, f"dtype {text!r} is not allowed here")
    return dtype


def _decode_labels(ctx: _LoadContext, node: dict[str, Any], key: str, where: str) -> np.ndarray:
    encoded = ctx.require(node, key, dict, where)
    dtype = _parse_dtype(ctx, ctx.require(encoded, "dtype", str, f"{where}.{key}"), _LABEL_KINDS, f"{where}.{key}")
    try:
        values = _decode_value(ctx.require(encoded, "values", list, f"{where}.{key}"))
        if dtype.kind == "O":
            labels = np.empty(len(values), dtype=object)
            labels[:] = values
        else:
            labels = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ctx.error(f"{where}.{key}", str(exc)) from exc
    if labels.ndim != 1 or any(not isinstance(v, _LABEL_SCALARS) for v in values):
        raise ctx.error(f"{where}.{key}", "labels must be a flat list of str, int, float or bool")
    return labels


def _restore_params(ctx: _LoadContext, estimator: BaseEstimator, node: dict[str, Any], where: str) -> None:
    params = ctx.require(node, "params", dict, where)
    try:
        estimator.set_params(**{name: _decode_value(value) for name, value in params.items()})
    except (TypeError, ValueError) as exc:
        raise ctx.error(where, f"cannot restore parameters of {type(estimator).__name__}: {exc}") from exc


def _restore_feature_info(ctx: _LoadContext, estimator: BaseEstimator, node: dict[str, Any], where: str) -> int:
    n_features = ctx.require(node, "n_features_in", int, where)
    if n_features < 1:
        raise ctx.error(where, f"n_features_in must be positive, got {n_features}")
    estimator.n_features_in_ = n_features
    if "feature_names_in" in node:
        names = _decode_labels(ctx, node, "feature_names_in", where)
        if names.shape != (n_features,):
            raise ctx.error(where, f"{names.shape[0]} feature names for {n_features} features")
        estimator.feature_names_in_ = names.astype(object)
    return n_features


def _check_shape(ctx: _LoadContext, where: str, attr: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    if array.shape != expected:
        raise ctx.error(where, f"{attr} has shape {array.shape}, expected {expected}")


def _load_logistic(ctx: _LoadContext, node: dict[str, Any], where: str) -> LogisticRegression:
    estimator = LogisticRegression()
    _restore_params(ctx, estimator, node, where)
    if not ctx.require(node, "fitted", bool, where):
        return estimator
    classes = _decode_labels(ctx, node, "classes", where)
    n_features = _restore_feature_info(ctx, estimator, node, where)
    if classes.shape[0] < 2:
        raise ctx.error(where, "a fitted LogisticRegression needs at least 2 classes")
    # Binary problems keep a single row of coefficients (the positive class).
    rows = 1 if classes.shape[0] == 2 else classes.shape[0]
    coef = ctx.tensor(node, "coef_", where)
    intercept = ctx.tensor(node, "intercept_", where)
    n_iter = ctx.tensor(node, "n_iter_", where)
    _check_shape(ctx, where, "coef_", coef, (rows, n_features))
    if intercept.shape not in ((rows,), ()):
        raise ctx.error(where, f"intercept_ has shape {intercept.shape}, expected ({rows},)")
    if n_iter.ndim != 1:
        raise ctx.error(where, f"n_iter_ must be 1-D, got shape {n_iter.shape}")
    estimator.classes_ = classes
    estimator.coef_ = coef
    estimator.intercept_ = intercept
    estimator.n_iter_ = n_iter
    return estimator


def _load_constant(ctx: _LoadContext, node: dict[str, Any], where: str) -> _ConstantPredictor:
    estimator = _ConstantPredictor()
    _restore_feature_info(ctx, estimator, node, where)
    y = ctx.tensor(node, "y_", where)
    # OneVsRestClassifier fits it on np.unique of a 0/1 column holding a single value.
    if y.shape != (1,) or y[0] not in (0, 1):
        raise ctx.error(where, f"_ConstantPredictor.y_ must be [0] or [1], got {y.tolist()}")
    estimator.y_ = y
    return estimator


def _load_wrapper_base(
    ctx: _LoadContext, cls: type, node: dict[str, Any], where: str, link_loaders: dict[str, Callable[..., Any]]
) -> tuple[BaseEstimator, list[BaseEstimator]]:
    """Rebuild a wrapper's params, template and fitted links; returns (wrapper, links)."""
    template = _load_node(ctx, ctx.require(node, "estimator", dict, where), f"{where}.estimator", _TEMPLATE_LOADERS)
    if _is_fitted(template):
        raise ctx.error(f"{where}.estimator", "the wrapped template estimator must be unfitted")
    wrapper = cls(template)
    _restore_params(ctx, wrapper, node, where)
    if not ctx.require(node, "fitted", bool, where):
        return wrapper, []
    n_features = _restore_feature_info(ctx, wrapper, node, where)
    nodes = ctx.require(node, "estimators", list, where)
    if not nodes:
        raise ctx.error(where, "a fitted wrapper needs at least one estimator")
    links = [_load_node(ctx, sub, f"{where}.estimators[{i}]", link_loaders) for i, sub in enumerate(nodes)]
    for i, link in enumerate(links):
        # ClassifierChain links see the earlier links' predictions as extra features.
        expected = n_features + i if cls is ClassifierChain else n_features
        if link.n_features_in_ != expected:
            raise ctx.error(f"{where}.estimators[{i}]", f"expects {link.n_features_in_} features, not {expected}")
    wrapper.estimators_ = links
    return wrapper, links


def _load_one_vs_rest(ctx: _LoadContext, node: dict[str, Any], where: str) -> OneVsRestClassifier:
    wrapper, links = _load_wrapper_base(ctx, OneVsRestClassifier, node, where, _OVR_LINK_LOADERS)
    if not links:
        return wrapper
    classes = _decode_labels(ctx, node, "classes", where)
    wrapper.label_binarizer_ = _load_label_binarizer(ctx, node, classes, f"{where}.label_binarizer")
    # A binary target is binarised into a single column, hence a single link.
    expected = 1 if wrapper.label_binarizer_.y_type_ == "binary" else classes.shape[0]
    if len(links) != expected:
        raise ctx.error(where, f"{len(links)} estimators for {classes.shape[0]} classes, expected {expected}")
    # fit() makes classes_ the binarizer's own array; keep them shared.
    wrapper.classes_ = wrapper.label_binarizer_.classes_
    return wrapper


def _load_label_binarizer(ctx: _LoadContext, node: dict[str, Any], classes: np.ndarray, where: str) -> LabelBinarizer:
    spec = ctx.require(node, "label_binarizer", dict, where)
    binarizer = LabelBinarizer(
        neg_label=ctx.require(spec, "neg_label", int, where),
        pos_label=ctx.require(spec, "pos_label", int, where),
        sparse_output=ctx.require(spec, "sparse_output", bool, where),
    )
    y_type = ctx.require(spec, "y_type", str, where)
    if y_type not in _OVR_Y_TYPES:
        raise ctx.error(where, f"y_type {y_type!r} is not one of {_OVR_Y_TYPES}")
    # These three are exactly what LabelBinarizer.fit sets and what inverse_transform reads.
    binarizer.y_type_ = y_type
    binarizer.sparse_input_ = ctx.require(spec, "sparse_input", bool, where)
    binarizer.classes_ = classes
    return binarizer


def _load_multi_output(ctx: _LoadContext, node: dict[str, Any], where: str) -> MultiOutputClassifier:
    wrapper, links = _load_wrapper_base(ctx, MultiOutputClassifier, node, where, _LOGISTIC_ONLY)
    if links:
        wrapper.classes_ = [link.classes_ for link in links]
    return wrapper


def _load_chain(ctx: _LoadContext, node: dict[str, Any], where: str) -> ClassifierChain:
    wrapper, links = _load_wrapper_base(ctx, ClassifierChain, node, where, _LOGISTIC_ONLY)
    if not links:
        return wrapper
    order = ctx.tensor(node, "order_", where)
    if sorted(order.tolist()) != list(range(len(links))):
        raise ctx.error(where, f"order_ {order.tolist()} is not a permutation of the {len(links)} chain links")
    chain_method = ctx.require(node, "chain_method", str, where)
    if chain_method not in _CHAIN_METHODS:
        raise ctx.error(where, f"chain_method {chain_method!r} is not one of {_CHAIN_METHODS}")
    wrapper.order_ = order
    wrapper.chain_method_ = chain_method
    wrapper.classes_ = [link.classes_ for link in links]
    return wrapper


def _load_node(
    ctx: _LoadContext, node: Any, where: str, loaders: dict[str, Callable[..., BaseEstimator]]
) -> BaseEstimator:
    if not isinstance(node, dict):
        raise ctx.error(where, "expected an object")
    type_name = ctx.require(node, "type", str, where)
    if type_name not in loaders:
        allowed = ", ".join(sorted(loaders))
        raise ctx.error(where, f"unknown or disallowed estimator type {type_name!r}; expected one of: {allowed}")
    return loaders[type_name](ctx, node, where)


_LOGISTIC_ONLY = {"LogisticRegression": _load_logistic}
_TEMPLATE_LOADERS = _LOGISTIC_ONLY
_OVR_LINK_LOADERS = {"LogisticRegression": _load_logistic, "_ConstantPredictor": _load_constant}
_TOP_LEVEL_LOADERS = {
    "LogisticRegression": _load_logistic,
    "OneVsRestClassifier": _load_one_vs_rest,
    "MultiOutputClassifier": _load_multi_output,
    "ClassifierChain": _load_chain,
}

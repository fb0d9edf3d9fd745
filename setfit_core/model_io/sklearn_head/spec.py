"""Legacy reader, first half: read and validate `model_head.json` and `model_head.safetensors`.

setfit_core wrote scikit-learn heads in this format (LogisticRegression and the three multi-label
wrappers only) before it switched to skops; it is still read, never written. Everything here treats
the files as untrusted input: each field is type-checked through `_LoadContext.require` so a malformed
spec fails with its location instead of deep inside sklearn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file
from sklearn.base import BaseEstimator

from setfit_core.model_io.sklearn_head.formats import (
    _LABEL_KINDS,
    _LABEL_SCALARS,
    _TENSOR_KINDS,
    FORMAT_NAME,
    FORMAT_VERSION,
    PICKLE_HEAD_FILE,
    SKOPS_HEAD_FILE,
)


def _missing_spec_message(directory: Path, spec_path: Path) -> str:
    message = f"No scikit-learn head in {directory}: neither {SKOPS_HEAD_FILE} nor {spec_path.name} (earlier versions)"
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


def _decode_value(value: Any) -> Any:
    """JSON values as written: non-finite floats (`{"__float__": "inf"}`) and non-string dict keys were tagged."""
    if isinstance(value, list):
        return [_decode_value(item) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__float__"} and value["__float__"] in ("inf", "-inf", "nan"):
        return float(value["__float__"])
    if set(value) == {"__dict__"} and isinstance(value["__dict__"], list):
        return {_decode_value(k): _decode_value(v) for k, v in value["__dict__"]}
    raise ValueError(f"unrecognised encoded value {value!r}")


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

"""Legacy reader, second half: rebuild real, fitted scikit-learn estimators from a validated spec.

Estimator types are looked up in explicit loader tables, never imported by name, so a spec can only
ever produce the allow-listed types; each loader sets exactly the attributes that `fit` would.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.preprocessing import LabelBinarizer

from setfit_core.model_io.sklearn_head.formats import _CHAIN_METHODS, _OVR_Y_TYPES, HEAD_SPEC_FILE, HEAD_WEIGHTS_FILE
from setfit_core.model_io.sklearn_head.spec import (
    _check_shape,
    _decode_labels,
    _LoadContext,
    _missing_spec_message,
    _read_spec,
    _read_weights,
    _restore_feature_info,
    _restore_params,
)
from setfit_core.model_io.sklearn_head.support import _is_fitted


def load_legacy_head(directory: str | os.PathLike) -> BaseEstimator:
    """Rebuild a head saved as `model_head.json` + `model_head.safetensors`; never unpickles anything."""
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

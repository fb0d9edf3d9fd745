"""The heads a `SetFitModel` is built with: setfit's LogisticRegression (wrapped for multi-label) and the
differentiable `SetFitHead`, and the multi-target strategies both accept."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier

from setfit_core.differentiable_head import SetFitHead

MULTI_TARGET_STRATEGIES = ("one-vs-rest", "multi-output", "classifier-chain")


def build_sklearn_head(head_params: dict[str, Any], multi_target_strategy: str | None):
    """LogisticRegression (setfit's default head), wrapped for multi-label strategies."""
    try:
        clf = LogisticRegression(**head_params)
    except TypeError as exc:
        raise ValueError(f"head_params {head_params!r} are not valid LogisticRegression parameters: {exc}") from exc
    wrappers = {"one-vs-rest": OneVsRestClassifier, "multi-output": MultiOutputClassifier,
                "classifier-chain": ClassifierChain}
    return wrappers[multi_target_strategy](clf) if multi_target_strategy else clf


def build_differentiable_head(
    head_params: dict[str, Any],
    in_features: int,
    num_classes: int,
    multitarget: bool = False,
    device: str | torch.device | None = None,
) -> SetFitHead:
    """A new `SetFitHead` with one output per class (`out_features` in `head_params`, if given, must match)."""
    out = head_params.get("out_features", num_classes)
    if out != num_classes:
        raise ValueError(
            f"head_params['out_features'] is {out!r} but the training data has {num_classes} classes; "
            f"set out_features={num_classes} or leave it out to infer it"
        )
    params = {k: v for k, v in head_params.items() if k not in ("out_features", "in_features", "device")}
    return SetFitHead(in_features=in_features, out_features=num_classes, multitarget=multitarget, device=device,
                      **params)


def check_strategy(multi_target_strategy: str | None, differentiable: bool) -> None:
    if multi_target_strategy is not None and multi_target_strategy not in MULTI_TARGET_STRATEGIES:
        raise ValueError(
            f"'multi_target_strategy' must be None or one of {list(MULTI_TARGET_STRATEGIES)}; "
            f"got {multi_target_strategy!r}"
        )
    if differentiable and multi_target_strategy == "classifier-chain":
        raise ValueError(
            "'multi_target_strategy' 'classifier-chain' is not supported by the differentiable head; "
            "use 'one-vs-rest' or 'multi-output', or the scikit-learn head"
        )

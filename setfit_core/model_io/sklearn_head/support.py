"""Which heads can be stored without pickle, plus small helpers both directions need.

The allow-list is checked before anything is written, so an unsupported head fails with a message
pointing at the pickle fallback instead of producing a file that cannot be loaded back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier, _ConstantPredictor
from sklearn.multioutput import ClassifierChain, MultiOutputClassifier
from sklearn.utils.validation import check_is_fitted

from setfit_core.model_io.sklearn_head.formats import PICKLE_HEAD_FILE

_SUPPORTED_DESCRIPTION = (
    "sklearn.linear_model.LogisticRegression, and sklearn.multiclass.OneVsRestClassifier, "
    "sklearn.multioutput.MultiOutputClassifier or sklearn.multioutput.ClassifierChain wrapping a "
    "LogisticRegression"
)

_WRAPPER_TYPES = (OneVsRestClassifier, MultiOutputClassifier, ClassifierChain)


def is_supported_sklearn_head(estimator: Any) -> bool:
    """Whether `save_sklearn_head` can store `estimator` (fitted or not) without pickle."""
    try:
        _check_supported(estimator)
    except TypeError:
        return False
    return True


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

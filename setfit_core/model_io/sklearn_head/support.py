"""Small helpers shared by the head readers and writers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted


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

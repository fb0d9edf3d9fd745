"""The trusted-pickle path: setfit 1.x's `model_head.pkl`, kept for interop.

Writing a pickle is harmless; reading one can execute arbitrary code, so loading is refused unless
the caller passes `trust_pickle=True` explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Module import (not `from joblib import load`) so tests can patch joblib.load and see every call.
import joblib

from setfit_core.model_io.sklearn_head.formats import PICKLE_HEAD_FILE, SKOPS_HEAD_FILE
from setfit_core.model_io.sklearn_head.support import _existing_directory


class UnsafeHeadError(ValueError):
    """Raised instead of unpickling a head that the caller has not declared trusted."""


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
            f"(setfit_core.model_io.sklearn_head.save_sklearn_head) to get the safe {SKOPS_HEAD_FILE} format."
        )
    return joblib.load(str(path))

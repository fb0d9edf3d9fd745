"""Save and load scikit-learn classification heads without pickle.

setfit 1.x stores its scikit-learn head as `model_head.pkl` (a joblib pickle), and unpickling can
run arbitrary code. Here any scikit-learn head (LogisticRegression, SVC, random forests, pipelines,
the multi-label wrappers, fitted or not) is written as `model_head.skops` with skops, and loaded
with a list of trusted types computed from the file itself (see `skops_io`): scikit-learn's own
Python classes load; a function, a class from another package or a C-level tree structure loads
only when named in `trust_head_types`.

Heads saved by earlier versions as `model_head.json` + `model_head.safetensors` (LogisticRegression
and its multi-label wrappers) still load through the legacy reader (`spec` + `rebuild`), which
rebuilds them from an allow-list of types.

The pickle format is still available for setfit 1.x interop: writing it is safe, but loading it
needs an explicit `trust_pickle=True`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setfit_core.model_io.sklearn_head.formats import (  # noqa: F401  (FORMAT_*: the legacy format's ids)
    FORMAT_NAME,
    FORMAT_VERSION,
    HEAD_SPEC_FILE,
    HEAD_WEIGHTS_FILE,
    PICKLE_HEAD_FILE,
    SKOPS_HEAD_FILE,
)
from setfit_core.model_io.sklearn_head.pickle_io import UnsafeHeadError, load_pickle_head, save_pickle_head
from setfit_core.model_io.sklearn_head.rebuild import load_legacy_head
from setfit_core.model_io.sklearn_head.skops_io import load_skops_head, save_skops_head, trusted_by_default

__all__ = [
    "HEAD_SPEC_FILE",
    "HEAD_WEIGHTS_FILE",
    "PICKLE_HEAD_FILE",
    "SKOPS_HEAD_FILE",
    "UnsafeHeadError",
    "load_legacy_head",
    "load_pickle_head",
    "load_sklearn_head",
    "save_pickle_head",
    "save_sklearn_head",
    "trusted_by_default",
]


def save_sklearn_head(estimator: Any, directory: str | os.PathLike) -> Path:
    """Write `model_head.skops` into an existing directory; returns its path."""
    return save_skops_head(estimator, directory)


def load_sklearn_head(directory: str | os.PathLike, trust_head_types: Sequence[str] = ()) -> Any:
    """The head in `directory`: `model_head.skops`, else the legacy `model_head.json`; never unpickles.

    `trust_head_types`: type names (as the UnsafeHeadError lists them) to trust beyond the defaults.
    """
    if (Path(directory) / SKOPS_HEAD_FILE).is_file():
        return load_skops_head(directory, trust_head_types)
    return load_legacy_head(directory)

"""The trusted-pickle path: setfit 1.x's `model_head.pkl`, kept for interop.

Writing a pickle is harmless; reading one can execute arbitrary code, so loading is refused unless
the caller passes `trust_pickle=True` explicitly.
"""

from __future__ import annotations

import os
import pickletools
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
        raise UnsafeHeadError(_refusal(directory, pickled_class(path)))
    return joblib.load(str(path))


def pickled_class(path: Path) -> str | None:
    """The class of a pickle's top object (`"module.Name"`), read from its opcodes, which are listed, never run;
    None for a stream this cannot read (a compressed joblib file)."""
    strings: list[str] = []
    try:
        with open(path, "rb") as stream:
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name == "GLOBAL":  # protocols 0-3: "module name"
                    return ".".join(arg.split(" ", 1))
                if opcode.name == "STACK_GLOBAL":  # protocol 4+: the two strings pushed just before
                    return ".".join(strings[-2:]) if len(strings) >= 2 else None
                if isinstance(arg, str) and "UNICODE" in opcode.name:
                    strings.append(arg)
    except (ValueError, EOFError):  # pickletools' errors for bytes that are not pickle opcodes
        return None
    return None


def _refusal(directory: str | os.PathLike, cls: str | None) -> str:
    """What `model_head.pkl` holds, why it is not loaded, and the two ways out."""
    if cls is not None and (cls.endswith(".SetFitHead") or cls.startswith("torch.")):
        what = f"a pickled differentiable head ({cls}, a torch module; setfit 1.x format)"
        resave = "SetFitModel.save_pretrained writes it as model_head.safetensors + config_setfit.json"
    else:
        if cls is not None and cls.startswith("sklearn."):
            what = f"a pickled scikit-learn head ({cls}; setfit 1.x format)"
        else:  # unreadable (compressed), or another kind of object: say only what is known
            what = f"a pickled head{f' (its top object is made by {cls})' if cls else ''} (setfit 1.x format)"
        resave = (f"SetFitModel.save_pretrained (or setfit_core.model_io.sklearn_head.save_sklearn_head) writes it "
                  f"as {SKOPS_HEAD_FILE}")
    return (
        f"{directory} holds {PICKLE_HEAD_FILE!r}, {what}. Unpickling can execute arbitrary code, so it is not "
        "loaded by default. Pass trust_pickle=True only if you trust the source of this file; otherwise load it "
        f"once in a trusted environment and re-save it with setfit_core: {resave}, which loads without pickle."
    )

"""Any scikit-learn head as `model_head.skops`, loaded with a computed list of trusted types.

skops (`skops.io`) stores an estimator tree as JSON plus numpy arrays in a zip file. Loading audits
every type named in the file *before* building any object, and builds only types on a trusted list;
nothing is unpickled. skops trusts scikit-learn's public estimators, numpy and builtin containers
itself; `get_untrusted_types` names everything else the file holds. Of those, this module trusts
exactly the *pure-Python classes defined in scikit-learn* (private helpers such as
`sklearn.multiclass._ConstantPredictor` or `sklearn.calibration._CalibratedClassifier`): their state is
ordinary attributes that skops checks one by one. It never trusts on its own:

* functions and lambdas (a `FunctionTransformer(func=...)` would call them at predict time);
* anything outside scikit-learn (a custom class runs its own code);
* C extension types and classes built on them (`sklearn.tree._tree.Tree`, KD-trees, distance metrics),
  and the types skops itself flags (`UNTRUSTED_TYPE_REASONS`): scikit-learn indexes their raw node
  arrays without bounds checks, so a crafted file could crash the process when the head predicts.

Those load only when the caller names them in `trust_head_types` (random forests need
`["sklearn.tree._tree.Tree"]`), after reviewing where the file came from.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException

from setfit_core.model_io.sklearn_head.formats import PICKLE_HEAD_FILE, SKOPS_HEAD_FILE
from setfit_core.model_io.sklearn_head.pickle_io import UnsafeHeadError
from setfit_core.model_io.sklearn_head.support import _existing_directory, _type_name

logger = logging.getLogger(__name__)

# Flagged by skops (0.16) as unsafe to trust by default; read from skops too, so that later additions count.
_CONTENT_UNSAFE = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    *getattr(sio.exceptions, "UNTRUSTED_TYPE_REASONS", {}),
})
_PY_TPFLAGS_HEAPTYPE = 1 << 9  # set on classes written in Python, clear on C / Cython extension types
_SCHEMA = "schema.json"
_DATA_FILE = re.compile(r"(\d+)(\.\w+)")  # skops names array files after the saved object's id()


def save_skops_head(estimator: Any, directory: str | os.PathLike) -> Path:
    """Write `model_head.skops` into an existing directory; returns its path.

    Refuses (TypeError, nothing written) a head that could never be loaded back, such as one holding a
    lambda, and logs the types that will need `trust_head_types` at load time.
    """
    directory = _existing_directory(directory)
    try:
        data = sio.dumps(estimator)
    except TypeError as exc:  # skops' UnsupportedTypeException is a TypeError
        raise TypeError(
            f"cannot save the scikit-learn head {_type_name(estimator)} with skops: {exc}. Write it with "
            f"save_pickle_head instead ({PICKLE_HEAD_FILE}; loading it then needs trust_pickle=True)"
        ) from exc
    untrusted = sio.get_untrusted_types(data=data)
    if unloadable := [name for name in untrusted if "<" in name]:  # <lambda>, <locals>
        raise TypeError(
            f"cannot save the scikit-learn head {_type_name(estimator)}: it holds {unloadable}, which cannot be "
            "loaded back by name; define the function at module level (or use a numpy function) instead"
        )
    if needs_trust := [name for name in untrusted if not trusted_by_default(name)]:
        logger.warning("%s holds types that load only with trust_head_types=%r", SKOPS_HEAD_FILE, needs_trust)
    path = directory / SKOPS_HEAD_FILE
    path.write_bytes(_deterministic(data))
    return path


def load_skops_head(directory: str | os.PathLike, trust_head_types: Sequence[str] = ()) -> Any:
    """Load `model_head.skops`: refuses (UnsafeHeadError) types neither trusted by default nor listed."""
    extra = _check_trust_list(trust_head_types)
    path = Path(directory) / SKOPS_HEAD_FILE
    data = path.read_bytes()  # audit and build the same bytes
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # zipfile, json and skops fail differently on a damaged file: name the file
        raise _damaged(path, exc) from exc
    refused = [name for name in untrusted if name not in extra and not trusted_by_default(name)]
    if refused:
        raise UnsafeHeadError(
            f"{path} holds types that are not trusted by default: {refused}. Only scikit-learn's estimators "
            "and its other pure-Python classes load without review; functions, classes from other packages "
            "and scikit-learn's C-level tree structures (which a crafted file can make crash the process) "
            f"must be named. If you trust the source of this file, pass trust_head_types={refused!r}"
        )
    try:
        return sio.loads(data, trusted=untrusted)  # every entry was checked above
    except UntrustedTypesFoundException:
        raise
    except Exception as exc:
        raise _damaged(path, exc) from exc


def trusted_by_default(type_name: str) -> bool:
    """Whether a type skops reports as untrusted is trusted here: a pure-Python scikit-learn class."""
    if not type_name.startswith("sklearn.") or type_name in _CONTENT_UNSAFE:
        return False
    module_name, _, attr = type_name.rpartition(".")
    try:  # only scikit-learn's own installed modules are ever imported here
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return False
    return isinstance(obj, type) and all(
        base is object or base.__flags__ & _PY_TPFLAGS_HEAPTYPE for base in obj.__mro__
    )


def _deterministic(data: bytes) -> bytes:
    """The same zip with the same content for the same head: skops numbers objects (and the array files named
    after them) by their `id()` in this process and stamps every member with the current time, so two saves of
    one head differ. Here the numbers become 1, 2, ... in schema order (which keeps shared objects shared), the
    time a fixed one, and padding bytes inside records zeros. Anything unexpected (a member no schema entry
    names) keeps skops' own bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        schema = json.loads(source.read(_SCHEMA))
        numbers: dict[int, int] = {}
        renamed: dict[str, str] = {}
        schema = _renumber(schema, numbers, renamed)
        if set(source.namelist()) != {_SCHEMA, *renamed}:
            return data
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for name in source.namelist():
                content = source.read(name)
                if name == _SCHEMA:
                    content = json.dumps(schema, indent=2).encode()
                elif name.endswith(".npy"):  # skops also writes .npz for sparse matrices: left as they are
                    content = _zero_padding(content)
                target.writestr(zipfile.ZipInfo(renamed.get(name, name), date_time=(1980, 1, 1, 0, 0, 0)), content)
    return out.getvalue()


def _zero_padding(content: bytes) -> bytes:
    """An .npy of records (a tree's nodes) with its padding bytes zeroed: numpy leaves them uninitialised."""
    array = np.load(io.BytesIO(content))  # only numeric and record dtypes reach a file: skops stores no pickles
    if array.dtype.names is None:
        return content
    clean = np.zeros(array.shape, array.dtype)  # calloc'd, padding included; assigning the fields leaves it so
    for field in array.dtype.names:
        clean[field] = array[field]
    out = io.BytesIO()
    np.save(out, clean)
    return out.getvalue()


def _renumber(node: Any, numbers: dict[int, int], renamed: dict[str, str]) -> Any:
    """`node` with every `__id__` and id-named `file` replaced by its number in order of first appearance."""
    if isinstance(node, list):
        return [_renumber(item, numbers, renamed) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            value = numbers.setdefault(value, len(numbers) + 1)
        elif key == "file" and isinstance(value, str) and (match := _DATA_FILE.fullmatch(value)):
            number = numbers.setdefault(int(match[1]), len(numbers) + 1)
            value = renamed.setdefault(value, f"{number}{match[2]}")
        else:
            value = _renumber(value, numbers, renamed)
        out[key] = value
    return out


def _check_trust_list(trust_head_types: Sequence[str]) -> frozenset[str]:
    # A bare string would be trusted letter by letter; True is not a list (there is no "trust everything").
    names_list = isinstance(trust_head_types, (list, tuple, set, frozenset))
    if not names_list or not all(isinstance(name, str) for name in trust_head_types):
        raise TypeError(
            "'trust_head_types' must be a list of fully qualified type names such as "
            f"['sklearn.tree._tree.Tree']; got {trust_head_types!r}"
        )
    return frozenset(trust_head_types)


def _damaged(path: Path, exc: Exception) -> ValueError:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return ValueError(
        f"could not read the scikit-learn head {path} ({type(exc).__name__}: {first_line}); the file is damaged "
        "or was not written by skops. Download or save the model again"
    )

"""`report_to`: which experiment trackers a training run reports to, checked where the value comes in.

Two trackers: "tensorboard" (event files under `logging_dir`) and "mlflow" (params, metrics and the trained
model in an MLflow run). "none" (the default) reports nowhere, "all" to every tracker whose package is
installed. Names are checked when `TrainingArguments` is built; whether the package is installed is checked
when a `Trainer` or a pipeline run starts, since arguments may be written on a machine that does not train.
The trackers themselves (transformers `TrainerCallback`s) are in `training/trackers.py`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

# tracker name -> (module that must import, the packages the `tracking` extra installs for it)
TRACKERS = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "tensorboard": ("tensorboard", "tensorboard"),
}
EXTRA = "tracking"
_OFF, _ALL = "none", "all"


def check_report_to(report_to: Any) -> None:
    """Raise ValueError for a value that names no tracker; accept what `resolve_report_to` accepts."""
    _names(report_to)


def resolve_report_to(report_to: Any) -> list[str]:
    """The trackers to report to, in a fixed order: "all" becomes every installed one; a named tracker whose
    package is missing raises ImportError naming the extra that installs it."""
    names = _names(report_to)
    if names == [_ALL]:
        return [name for name in TRACKERS if installed(name)]
    for name in names:
        if not installed(name):
            module, package = TRACKERS[name]
            raise ImportError(f"report_to={name!r} needs the {module!r} package, which is not installed: "
                              f"pip install 'setfit-pipeline[{EXTRA}]' (or pip install {package})")
    return names


def installed(name: str) -> bool:
    return importlib.util.find_spec(TRACKERS[name][0]) is not None


def _names(report_to: Any) -> list[str]:
    """setfit's spellings: a name or a list of names; None and [] mean "none" here (setfit 1.2.0 reads None as
    "all", transformers 5 as no tracker: the safer one)."""
    values = [report_to] if report_to is None or isinstance(report_to, str) else report_to
    if not isinstance(values, (list, tuple)) or not all(v is None or isinstance(v, str) for v in values):
        raise ValueError(f"'report_to' must be a tracker name or a list of them; got {report_to!r}")
    names = [v for v in values if v not in (None, _OFF)]
    valid = [_OFF, _ALL, *TRACKERS]
    for name in names:
        if name not in valid:
            raise ValueError(
                f"'report_to' must be one of {valid} (or a list of them); got {name!r}. For another tracker pass "
                "its transformers TrainerCallback: Trainer(callbacks=[...])"
            )
    if _ALL in names and len(names) > 1:
        raise ValueError(f"'report_to' 'all' already means every installed tracker; got {report_to!r}")
    return list(dict.fromkeys(names))

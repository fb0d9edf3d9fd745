"""setfit's data helpers: a few-shot sample per class, and training examples made from label names.

`sample_dataset` keeps up to `num_samples` rows of each label, chosen as setfit 1.2.0 chooses them (the same
rows, in the same order, for the same seed). `get_templated_dataset` turns each candidate label into
`sample_size` sentences such as "This sentence is positive", which is all SetFit needs to train a
zero-shot classifier, or adds them to a few-shot dataset.

Both take what `Trainer` takes (a `datasets.Dataset`, a pandas DataFrame or a dict of lists) and return
the same kind; `get_templated_dataset()` without a dataset returns a `datasets.Dataset`, as setfit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from setfit_core.data import _columns_of

__all__ = ["get_templated_dataset", "sample_dataset"]


def sample_dataset(dataset: Any, label_column: str = "label", num_samples: int = 8, seed: int = 42) -> Any:
    """Up to `num_samples` rows per label, shuffled with `seed`.

    The rows are setfit's: shuffle with numpy's `default_rng(seed)` (as `datasets.Dataset.shuffle`), keep the
    first `num_samples` of each label in that order, shuffle the kept rows again with the same seed.
    """
    if not _is_int(num_samples) or num_samples < 1:
        raise ValueError(f"'num_samples' must be a positive int (rows per label); got {num_samples!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"'seed' must be an int >= 0; got {seed!r}")
    columns, _ = _columns_of(dataset, "dataset")
    labels = _column(columns, label_column, "label_column")
    for i, label in enumerate(labels):
        if isinstance(label, (list, tuple, np.ndarray)):
            raise ValueError(f"dataset column {label_column!r} row {i} is a multi-hot row {list(label)!r}; "
                             "sample_dataset samples per single label. Sample multi-label data yourself")
        if label is None or (isinstance(label, float) and math.isnan(label)):
            raise ValueError(f"dataset column {label_column!r} row {i} has no label ({label!r}); drop it first")
    kept: list[int] = []
    per_label: dict[Any, int] = {}
    for i in np.random.default_rng(seed).permutation(len(labels)).tolist():
        if per_label.get(labels[i], 0) < num_samples:
            per_label[labels[i]] = per_label.get(labels[i], 0) + 1
            kept.append(i)
    order = np.asarray(kept, dtype=np.int64)[np.random.default_rng(seed).permutation(len(kept))]
    return _take(dataset, columns, order.tolist())


def get_templated_dataset(
    dataset: Any = None,
    candidate_labels: Sequence[str] | None = None,
    reference_dataset: Any = None,
    template: str = "This sentence is {}",
    sample_size: int = 2,
    text_column: str = "text",
    label_column: str = "label",
    multi_label: bool = False,
    label_names_column: str = "label_text",
) -> Any:
    """`dataset` (or a new `datasets.Dataset`) plus `sample_size` rows per candidate label, each
    `template.format(label_name)`.

    The labels come from `candidate_labels`, or from `reference_dataset`: a dataset name that
    `datasets.load_dataset` finds (its "train" split; offline, only from the cache), or a dataset given
    directly. Its names are the ClassLabel names of `label_column`, else `label_names_column` paired with
    the ids, else its string labels, sorted.

    A new row's label is the label's index in the candidates (multi-hot with `multi_label=True`), as in setfit,
    except when `dataset` already holds string labels: then it is the label name, so the rows train together.
    """
    columns = _columns_of(dataset, "dataset")[0] if dataset is not None else {}
    if columns:  # a dataset without columns (setfit's default, Dataset.from_dict({})) takes the new ones
        missing = [c for c in (text_column, label_column) if c not in columns]
        if missing:
            raise ValueError(f"dataset is missing column(s) {missing}; found columns: {sorted(columns)}. Pass "
                             "text_column=/label_column= to name yours")
    if bool(reference_dataset is not None and _nonempty(reference_dataset)) == bool(candidate_labels):
        raise ValueError("get_templated_dataset() needs exactly one of candidate_labels (a list of label names) or "
                         "reference_dataset (a dataset, or a dataset name, whose labels to use)")
    if candidate_labels is None:
        names = _reference_label_names(reference_dataset, label_column, label_names_column)
    else:
        names = _check_candidates(candidate_labels)
    _check_template(template)
    if not _is_int(sample_size) or sample_size < 1:
        raise ValueError(f"'sample_size' must be a positive int (rows per label); got {sample_size!r}")
    new_labels = _new_labels(names, columns.get(label_column, []), label_column, multi_label)
    texts = [template.format(name) for name in names for _ in range(sample_size)]
    labels = [label for label in new_labels for _ in range(sample_size)]
    return _append(dataset, {text_column: texts, label_column: labels})


# ---- checks --------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _nonempty(value: Any) -> bool:
    return bool(value) if isinstance(value, (str, Mapping, list, tuple)) else True


def _column(columns: dict[str, list[Any]], name: str, argument: str) -> list[Any]:
    if name not in columns:
        raise ValueError(f"dataset has no column {name!r}; found columns: {sorted(columns)}. Pass {argument}= to "
                         "name the right one")
    return list(columns[name])


def _check_candidates(candidate_labels: Any) -> list[str]:
    if isinstance(candidate_labels, str) or not isinstance(candidate_labels, Sequence):
        raise ValueError(f"'candidate_labels' must be a list of label names; got {candidate_labels!r}")
    names = list(candidate_labels)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"'candidate_labels' must hold non-blank strings; got {bad[0]!r} in {names!r}")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"'candidate_labels' must be distinct; {twice} appear more than once in {names!r}")
    return names


def _check_template(template: Any) -> None:
    if not isinstance(template, str):
        raise ValueError(f"'template' must be a string with '{{}}' where the label goes; got {template!r}")
    try:
        differs = template.format("\0a") != template.format("\0b")
    except (IndexError, KeyError, ValueError) as exc:
        raise ValueError(f"'template' must be a string with one '{{}}' where the label goes, e.g. "
                         f"'This sentence is {{}}'; got {template!r} ({type(exc).__name__}: {exc})") from None
    if not differs:
        raise ValueError(f"'template' must contain '{{}}' where the label goes, e.g. 'This sentence is {{}}'; got "
                         f"{template!r}, which would give every label the same text")


def _new_labels(names: list[str], existing: Sequence[Any], label_column: str, multi_label: bool) -> list[Any]:
    if multi_label:
        for i, row in enumerate(existing):
            if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != len(names):
                raise ValueError(f"dataset column {label_column!r} row {i} is {row!r}; with multi_label=True every "
                                 f"row must be a multi-hot list of length {len(names)}, one entry per candidate label")
        return [[int(i == j) for j in range(len(names))] for i in range(len(names))]
    if any(isinstance(row, (list, tuple, np.ndarray)) for row in existing):
        raise ValueError(f"dataset column {label_column!r} holds multi-hot rows; pass multi_label=True")
    if existing and all(isinstance(row, str) for row in existing):
        return list(names)  # the dataset names its labels: a templated row joins the rows of its label
    return list(range(len(names)))


def _reference_label_names(reference: Any, label_column: str, label_names_column: str) -> list[str]:
    if isinstance(reference, str):
        reference = _load_named_dataset(reference)
    features = getattr(reference, "features", None)
    names = getattr(features.get(label_column), "names", None) if isinstance(features, Mapping) else None
    if names:  # a ClassLabel column knows its names, in id order
        return list(names)
    columns, _ = _columns_of(reference, "reference_dataset")
    labels = _column(columns, label_column, "label_column")
    if label_names_column in columns:
        pairs = sorted(set(zip(labels, columns[label_names_column], strict=True)), key=lambda pair: pair[0])
        ids = [label for label, _ in pairs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"reference_dataset column {label_names_column!r} gives one label id several names: "
                             f"{pairs}")
        return [str(name) for _, name in pairs]
    if labels and all(isinstance(label, str) for label in labels):
        return sorted(set(labels))
    raise ValueError(f"reference_dataset has unnamed labels in {label_column!r} and no {label_names_column!r} column "
                     "to name them; pass label_names_column=, or candidate_labels=[...] instead")


def _load_named_dataset(name: str):
    import datasets

    try:
        return datasets.load_dataset(name, split="train")
    except Exception as exc:  # datasets raises many kinds (connection, not found, offline): name the dataset
        raise ValueError(f"could not load reference_dataset {name!r} with datasets.load_dataset (offline, only a "
                         f"cached dataset loads): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                         ". Pass the dataset itself, or candidate_labels=[...]") from exc


# ---- building the result in the caller's kind -------------------------------------------------------


def _take(dataset: Any, columns: dict[str, list[Any]], rows: list[int]) -> Any:
    if isinstance(dataset, Mapping):
        return {key: [columns[str(key)][i] for i in rows] for key in dataset}
    if hasattr(dataset, "select") and hasattr(dataset, "column_names"):  # datasets.Dataset: keeps its features
        return dataset.select(rows)
    return dataset.iloc[rows].reset_index(drop=True)  # pandas.DataFrame


def _append(dataset: Any, new: dict[str, list[Any]]) -> Any:
    """`dataset` with the rows `new` added (None in its other columns), as the same kind of object."""
    size = len(next(iter(new.values())))
    if isinstance(dataset, Mapping):
        out = {str(key): list(values) for key, values in dataset.items()}
        for key in out.keys() - new.keys():
            out[key] += [None] * size
        for key, values in new.items():
            out[key] = out.get(key, []) + values
        return out
    import datasets

    if dataset is None or (isinstance(dataset, datasets.Dataset) and not dataset.column_names):
        return datasets.Dataset.from_dict(new)
    if isinstance(dataset, datasets.Dataset):
        rows = {name: new.get(name, [None] * size) for name in dataset.column_names}
        return datasets.concatenate_datasets([dataset, datasets.Dataset.from_dict(rows, features=dataset.features)])
    import pandas as pd

    return pd.concat([dataset, pd.DataFrame(new)], ignore_index=True)

"""Where training and evaluation data come in: normalise, validate, encode labels.

Every check runs here, before any model work, and every error names the dataset, the offending
value and the fix. Data that passes but would train badly (blank texts, classes with one example,
...) is reported by `setfit_core.data_quality`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUIRED_COLUMNS = ("text", "label")


@dataclass(frozen=True)
class LabeledTexts:
    """Validated texts and their raw labels (ints, strings, or multi-hot rows for multi-label)."""

    texts: list[str]
    labels: list[Any]
    multi_label: bool
    # Columns feeding `text` or `label` that the source has more than once: name -> their positions.
    # Only the first of each is read; `setfit_core.data_quality` reports the rest.
    duplicate_columns: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _columns_of(dataset: Any, name: str) -> tuple[dict[str, Sequence[Any]], list[str]]:
    """A datasets.Dataset, pandas DataFrame or dict of lists as a dict of column sequences, and the
    column names in order, repeats included (only a DataFrame can repeat one; its first copy is kept)."""
    if isinstance(dataset, Mapping):
        return {str(k): list(v) for k, v in dataset.items()}, [str(k) for k in dataset]
    if hasattr(dataset, "column_names") and hasattr(dataset, "to_dict"):  # datasets.Dataset
        return {k: list(dataset[k]) for k in dataset.column_names}, list(dataset.column_names)
    if hasattr(dataset, "columns") and hasattr(dataset, "to_dict"):  # pandas.DataFrame
        names = [str(k) for k in dataset.columns]
        # By position: with a repeated name, dataset[k] is a DataFrame of every copy, not a column.
        columns = {}
        for i, column in enumerate(names):
            if column not in columns:
                columns[column] = dataset.iloc[:, i].tolist()
        return columns, names
    raise TypeError(
        f"{name} must be a datasets.Dataset, a pandas DataFrame or a dict of lists "
        f"with columns 'text' and 'label'; got {type(dataset).__name__}"
    )


def _apply_mapping(columns: dict[str, Sequence[Any]], mapping: Mapping[str, str] | None, name: str) -> dict:
    if not mapping:
        return columns
    missing = [c for c in mapping if c not in columns]
    if missing:
        raise ValueError(
            f"column_mapping names column(s) {missing} that {name} does not have; found columns: {sorted(columns)}"
        )
    bad_targets = [v for v in mapping.values() if v not in REQUIRED_COLUMNS]
    if bad_targets:
        raise ValueError(f"column_mapping values must be 'text' or 'label'; got {bad_targets}")
    return {mapping.get(k, k): v for k, v in columns.items()}


def _check_texts(texts: Sequence[Any], name: str) -> list[str]:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            kind = "NaN" if isinstance(text, float) and math.isnan(text) else repr(text)
            raise ValueError(
                f"{name} column 'text' row {i} is {kind} ({type(text).__name__}); every text must be a string. "
                "Drop or fill missing texts first, e.g. df.dropna(subset=['text'])"
            )
    return list(texts)


def _label_kind(label: Any) -> str:
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, str):
        return "str"
    if isinstance(label, numbers.Integral):
        return "int"
    if isinstance(label, numbers.Real):
        return "nan" if math.isnan(label) else "float"
    if isinstance(label, (list, tuple, np.ndarray)):
        return "multi"
    return type(label).__name__


def _check_labels(labels: Sequence[Any], name: str) -> tuple[list[Any], bool]:
    kinds: dict[str, int] = {}
    for i, label in enumerate(labels):
        kinds.setdefault(_label_kind(label), i)
    if "nan" in kinds:
        raise ValueError(f"{name} column 'label' row {kinds['nan']} is NaN; drop rows without a label first")
    if "float" in kinds:
        row = kinds["float"]
        raise ValueError(
            f"{name} column 'label' holds floats (row {row}: {labels[row]!r}); labels must be ints or strings. "
            "Cast them, e.g. df['label'] = df['label'].astype(int)"
        )
    unsupported = [k for k in kinds if k not in ("int", "str", "multi")]
    if unsupported:
        row = kinds[unsupported[0]]
        raise ValueError(
            f"{name} column 'label' row {row} is {labels[row]!r} ({unsupported[0]}); labels must be ints, strings, "
            "or (multi-label) lists of 0/1"
        )
    if len(kinds) > 1:
        examples = {k: labels[i] for k, i in kinds.items()}
        raise ValueError(
            f"{name} column 'label' mixes label types {examples}; use one type for every row "
            "(all ints, all strings, or all multi-hot lists)"
        )
    if "multi" in kinds:
        return _check_multi_hot(labels, name), True
    if "int" in kinds:
        return [int(x) for x in labels], False
    return list(labels), False


def _check_multi_hot(labels: Sequence[Any], name: str) -> list[list[int]]:
    rows = [list(np.asarray(label).tolist()) for label in labels]
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width or any(v not in (0, 1) for v in row):
            raise ValueError(
                f"{name} column 'label' row {i} is {row!r}; multi-label rows must all be 0/1 lists of length {width}"
            )
    return [[int(v) for v in row] for row in rows]


def load_labeled(
    dataset: Any,
    column_mapping: Mapping[str, str] | None = None,
    name: str = "train_dataset",
    column_names: Sequence[str] | None = None,
) -> LabeledTexts:
    """Validate a dataset with `text` and `label` columns (after `column_mapping`).

    `column_names`: the source's own column names in order, repeats included, where `dataset` cannot
    show them (a file's header read into a dict); by default the dataset's.
    """
    raw, names = _columns_of(dataset, name)
    duplicates = _duplicate_columns(column_names if column_names is not None else names, column_mapping)
    columns = _apply_mapping(raw, column_mapping, name)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {missing}; found columns: {sorted(columns)}. Rename them or pass "
            "column_mapping={'<your text column>': 'text', '<your label column>': 'label'}"
        )
    texts, labels = columns["text"], columns["label"]
    if len(texts) == 0:
        if not name.startswith("train"):  # an evaluation split: nothing to score on
            raise ValueError(f"{name} is empty (0 rows); give it labelled rows, or leave it out to skip evaluation")
        raise ValueError(f"{name} is empty; SetFit needs at least 2 labelled examples per class")
    checked_labels, multi = _check_labels(labels, name)
    return LabeledTexts(_check_texts(texts, name), checked_labels, multi, duplicates)


def load_texts(dataset: Any, column_mapping: Mapping[str, str] | None = None, name: str = "train_dataset",
               min_texts: int = 1) -> tuple[list[str], bool]:
    """Validate unlabelled texts: a list of strings, or a dataset with a `text` column (after
    `column_mapping`). Returns the texts and whether the dataset also had a `label` column, which the
    caller may have to say it does not use."""
    if isinstance(dataset, (list, tuple)):
        texts, has_labels = _check_texts(dataset, name), False
    else:
        raw, _ = _columns_of(dataset, name)
        columns = _apply_mapping(raw, column_mapping, name)
        if "text" not in columns:
            raise ValueError(
                f"{name} has no 'text' column; found columns: {sorted(columns)}. Rename it, pass "
                "column_mapping={'<your text column>': 'text'}, or give a list of strings"
            )
        texts, has_labels = _check_texts(columns["text"], name), "label" in columns
    if len(texts) < min_texts:
        raise ValueError(f"{name} has {len(texts)} text(s); it needs at least {min_texts}")
    return texts, has_labels


def _duplicate_columns(names: Sequence[str], mapping: Mapping[str, str] | None) -> dict[str, tuple[int, ...]]:
    """Positions of each name that occurs more than once and feeds `text` or `label` (others are never read)."""
    positions: dict[str, list[int]] = {}
    for i, column in enumerate(names):
        positions.setdefault(str(column), []).append(i)
    used = {c for c in positions if (mapping or {}).get(c, c) in REQUIRED_COLUMNS}
    return {c: tuple(p) for c, p in positions.items() if len(p) > 1 and c in used}


class LabelEncoder:
    """Maps labels to head indices 0..K-1 and back.

    `labels` (setfit's name) is the list that head indices map to: class names, or the int values when
    the training ints are not exactly 0..K-1. `None` means head index == int label.
    """

    def __init__(self, labels: list[Any] | None, num_classes: int) -> None:
        self.labels = labels
        self.num_classes = num_classes

    @classmethod
    def fit(cls, data: LabeledTexts, given: list[Any] | None, name: str = "train_dataset") -> LabelEncoder:
        if data.multi_label:
            width = len(data.labels[0])
            if given is not None and len(given) != width:
                raise ValueError(f"model labels has {len(given)} names but {name} rows have {width} labels")
            return cls(given, width)
        present = sorted(set(data.labels))
        if len(present) < 2:
            raise ValueError(
                f"{name} has a single class ({present[0]!r}); SetFit needs at least 2 classes to form negative "
                "pairs. Add examples of another class"
            )
        is_str = isinstance(present[0], str)
        if given is None:
            if not is_str and present == list(range(len(present))):
                return cls(None, len(present))
            return cls(present, len(present))
        if is_str or (given and not isinstance(given[0], str)):
            unknown = [x for x in present if x not in given]
            if unknown:
                raise ValueError(f"{name} has labels {unknown} that are not in the model's labels {given}")
            return cls(list(given), len(given))
        out_of_range = [x for x in present if not 0 <= x < len(given)]  # ints are ids into label names
        if out_of_range:
            raise ValueError(
                f"{name} has int labels {out_of_range} but the model has {len(given)} label names {given}; "
                f"int labels must be ids in 0..{len(given) - 1}"
            )
        return cls(list(given), len(given))

    def encode(self, labels: list[Any], name: str = "dataset") -> np.ndarray:
        if labels and isinstance(labels[0], list):
            return np.asarray(labels, dtype=np.int64)
        if self.labels is None or (labels and not isinstance(labels[0], str) and isinstance(self.labels[0], str)):
            if strings := [x for x in labels if isinstance(x, str)]:
                raise ValueError(
                    f"{name} has string labels (e.g. {strings[0]!r}) but the training labels are the ints "
                    f"{list(range(self.num_classes)) if self.labels is None else self.labels}; use the same "
                    "label type in every split"
                )
            ids = np.asarray(labels, dtype=np.int64)
            bad = sorted({int(x) for x in ids if not 0 <= x < self.num_classes})
        else:
            index = {value: i for i, value in enumerate(self.labels)}
            bad = sorted({x for x in labels if x not in index}, key=str)
            ids = np.asarray([index.get(x, -1) for x in labels], dtype=np.int64)
        if bad:
            known = self.labels if self.labels is not None else list(range(self.num_classes))
            raise ValueError(f"{name} has labels {bad} never seen in training; known labels: {known}")
        return ids

    def decode(self, ids: np.ndarray) -> list[Any]:
        if self.labels is None:
            return [int(i) for i in ids]
        return [self.labels[int(i)] for i in ids]


"""Data-quality findings: data that trains, but trains badly or slowly, found before any training.

Errors (`setfit_core.data`) stop data that cannot train; the checks here find data that can, and
report each finding as a `DataWarning` that names the values or rows and the fix:

- a column feeding `text` or `label` that the source has more than once (only the first is read);
- empty, whitespace-only or invisible texts (`is_blank_text`);
- classes with fewer than 2 examples, and fewer examples than 2 per class;
- more than 100 classes with at most 2 examples each under pair sampling, which makes pairs
  quadratic in the number of texts (the `fast` preset does not);
- identical texts with different labels.

`Trainer` and the pipeline's planning step log the findings; `check_data_quality(..., strict=True)`
(and the pipeline's ``strict=True``) raises them as one `DataQualityError` instead.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from setfit_core.args import PAIR_SAMPLING_STRATEGIES, TrainingArguments
from setfit_core.data import LabeledTexts, LabelEncoder, load_labeled
from setfit_core.training.sampling import pair_counts

SHOWN_ROWS = 5  # row numbers a message lists before "and N more"
SHOWN_CLASSES = 10
MIN_PER_CLASS = 2  # a class needs two examples for one positive pair that is not a text with itself
MANY_CLASSES, FEW_PER_CLASS = 100, 2  # more classes than this with at most this many examples: slow pairs

# Characters that show nothing. Categories: control (Cc), format (Cf: zero-width space and joiners, word
# joiner, BOM, soft hyphen, bidi marks, tags) and separators (Zs, Zl, Zp); str.isspace adds the rest of
# the whitespace. The ranges are Unicode's other Default_Ignorable_Code_Point characters, which belong to
# no such category: combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian and other
# variation selectors, and reserved ignorable code points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_OTHER_IGNORABLE = (
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2065, 0x2065),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF),
)


@dataclass(frozen=True)
class DataWarning:
    """One finding: `check` names the kind, `split` the dataset (e.g. ``train_dataset``, ``eval_data``)."""

    check: str
    split: str
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class DataQualityError(ValueError):
    """Raised in strict mode: every finding, one per line, in `.warnings`."""

    def __init__(self, warnings: Sequence[DataWarning]) -> None:
        self.warnings = tuple(warnings)
        lines = "\n".join(f"- {w.message}" for w in self.warnings)
        super().__init__(
            f"strict data checks found {len(self.warnings)} problem(s); fix the data, or turn strict off to train "
            f"anyway:\n{lines}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from the findings, not the message: a task runner may pickle the error across processes.
        return type(self), (self.warnings,)


def raise_if_any(warnings: Sequence[DataWarning]) -> None:
    """Strict mode: any finding is an error listing all of them."""
    if warnings:
        raise DataQualityError(warnings)


# ---- texts ------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _is_invisible(char: str) -> bool:
    if char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _OTHER_IGNORABLE)


def is_blank_text(text: str) -> bool:
    """True when `text` shows nothing: empty, whitespace, or only zero-width / format characters.

    A tokenizer drops such characters, so every blank text becomes the same empty input.

    Example:
        >>> is_blank_text(""), is_blank_text("   "), is_blank_text("\\u200b"), is_blank_text("\\u2060\\ufeff")
        (True, True, True, True)
        >>> is_blank_text("\\xad"), is_blank_text("ok"), is_blank_text(" a ")
        (True, False, False)
    """
    return all(_is_invisible(c) for c in text)  # a visible first character ends this at once


def _shown(text: str, limit: int = 40) -> str:
    """A text quoted with its invisible characters escaped (repr leaves some, e.g. U+3164, as they are)."""
    body = "".join(c if c == " " or not _is_invisible(c) else c.encode("unicode_escape").decode("ascii")
                   for c in text[:limit])
    return "'" + body.replace("'", "\\'") + "'" + ("…" if len(text) > limit else "")


def _rows(rows: Sequence[int]) -> str:
    more = f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    return f"{list(rows[:SHOWN_ROWS])}{more}"


def blank_texts(data: LabeledTexts, name: str) -> DataWarning | None:
    rows = [i for i, text in enumerate(data.texts) if is_blank_text(text)]
    if not rows:
        return None
    examples = ", ".join(_shown(t) for t in list(dict.fromkeys(data.texts[i] for i in rows))[:3])
    return DataWarning("blank-texts", name, (
        f"{name} has {len(rows)} empty or invisible text(s) at rows {_rows(rows)} ({examples}): only whitespace, "
        "zero-width, joiner, BOM, soft-hyphen or other format characters, so the body sees no words in them. "
        "Drop those rows (setfit_core.data_quality.is_blank_text finds them) or give them real text"
    ))


def duplicate_columns(data: LabeledTexts, name: str) -> DataWarning | None:
    if not data.duplicate_columns:
        return None
    which = " and ".join(f"{column!r} (positions {list(positions)})"
                         for column, positions in data.duplicate_columns.items())
    return DataWarning("duplicate-columns", name, (
        f"{name} has more than one column named {which}; only the first of each is read and the others are "
        "ignored. Rename or drop the extra column(s)"
    ))


def conflicting_labels(data: LabeledTexts, name: str) -> DataWarning | None:
    """Identical texts with different labels cannot both be right."""
    if data.multi_label:
        return None
    first_label: dict[str, Any] = {}
    conflicts = set()
    for text, label in zip(data.texts, data.labels, strict=True):
        if first_label.setdefault(text, label) != label:
            conflicts.add(text)
    if not conflicts:
        return None
    example = next(text for text in data.texts if text in conflicts)  # the first in row order: stable
    return DataWarning("conflicting-labels", name, (
        f"{name} has {len(conflicts)} text(s) that appear with different labels, e.g. {example[:80]!r}; check "
        "the labelling"
    ))


# ---- classes ----------------------------------------------------------------------------------------


def _class_list(counts: Mapping[Any, int], classes: Sequence[Any]) -> str:
    shown = ", ".join(f"{c!r} ({counts[c]})" for c in classes[:SHOWN_CLASSES])
    more = f" and {len(classes) - SHOWN_CLASSES} more" if len(classes) > SHOWN_CLASSES else ""
    return shown + more


def single_example_classes(counts: Mapping[Any, int], name: str) -> DataWarning | None:
    small = [c for c, n in counts.items() if n < MIN_PER_CLASS]  # in order of first appearance
    if not small:
        return None
    return DataWarning("single-example-classes", name, (
        f"{name} has {len(small)} class(es) with fewer than {MIN_PER_CLASS} examples: {_class_list(counts, small)}; "
        "the only positive pair of such a class is its one text paired with itself, so training learns nothing "
        "that brings its texts together. Add at least one more example of each, or drop these classes"
    ))


def too_few_examples(rows: int, num_classes: int, name: str) -> DataWarning | None:
    needed = MIN_PER_CLASS * num_classes
    if rows >= needed:
        return None
    return DataWarning("too-few-examples", name, (
        f"{name} has {rows} examples for {num_classes} classes, fewer than {needed} ({MIN_PER_CLASS} per class); "
        f"add examples until every class has at least {MIN_PER_CLASS}"
    ))


def many_tiny_classes(counts: Mapping[Any, int], name: str, args: TrainingArguments) -> DataWarning | None:
    """Pair sampling draws from every pair of texts, so with many tiny classes the pairs (and steps) grow
    with the square of the number of texts; label-balanced batches (the fast preset) do not."""
    tiny = [c for c, n in counts.items() if n <= FEW_PER_CLASS]
    pair_loss = getattr(args.loss, "kind", None) == "pair" and args.sampling_strategy in PAIR_SAMPLING_STRATEGIES
    if len(tiny) <= MANY_CLASSES or not pair_loss:
        return None
    rows = sum(counts.values())
    positives = sum(n * (n + 1) // 2 for n in counts.values())  # make_pairs' candidates: index pairs i <= j
    drawn = sum(pair_counts(positives, rows * (rows + 1) // 2 - positives, rows, args.sampling_strategy,
                            args.num_iterations))
    steps = -(-drawn // args.embedding_batch_size)
    capped = f" (max_steps={args.max_steps} stops it early)" if args.max_steps > 0 else ""
    return DataWarning("many-tiny-classes", name, (
        f"{name} has {len(tiny)} classes with at most {FEW_PER_CLASS} examples each (more than {MANY_CLASSES}): "
        f"pair sampling (sampling_strategy={args.sampling_strategy!r}) makes {drawn:,} pairs of its {rows:,} "
        f"texts, {steps:,} steps per epoch at batch size {args.embedding_batch_size}{capped}. "
        "Use TrainingArguments(preset=\"fast\") (pipeline: args={\"preset\": \"fast\"}): label-balanced batches of "
        "every class, a fraction of the steps"
    ))


# ---- all checks -------------------------------------------------------------------------------------


def split_warnings(data: LabeledTexts, name: str) -> list[DataWarning]:
    """The checks of any split: repeated columns and blank texts."""
    return _found(duplicate_columns(data, name), blank_texts(data, name))


def train_warnings(data: LabeledTexts, name: str, args: TrainingArguments | None = None) -> list[DataWarning]:
    """Every check of a training split; `args` (default: `TrainingArguments()`) says how pairs are sampled."""
    found = split_warnings(data, name)
    if data.multi_label:  # classes are label columns: only the overall count applies
        return found + _found(too_few_examples(len(data), len(data.labels[0]), name))
    counts = Counter(data.labels)
    return found + _found(
        single_example_classes(counts, name),
        too_few_examples(len(data), len(counts), name),
        many_tiny_classes(counts, name, args or TrainingArguments()),
        conflicting_labels(data, name),
    )


def _found(*warnings: DataWarning | None) -> list[DataWarning]:
    return [w for w in warnings if w is not None]


def check_data_quality(
    train_dataset: Any,
    eval_dataset: Any = None,
    *,
    column_mapping: Mapping[str, str] | None = None,
    args: TrainingArguments | None = None,
    strict: bool = False,
) -> list[DataWarning]:
    """The data-quality findings `Trainer` would log for these datasets, without a model.

    Data errors are raised first, as `Trainer` raises them. With ``strict=True`` any finding raises a
    `DataQualityError` (a `ValueError`) that lists them all; call it before building the `Trainer`:

        check_data_quality(train, test, args=args, strict=True)   # raises on any finding
        trainer = Trainer(model, args, train_dataset=train, eval_dataset=test)

    `args` matters for one check: pair sampling with many tiny classes (the default: `TrainingArguments()`).
    """
    train = load_labeled(train_dataset, column_mapping, "train_dataset")
    encoder = LabelEncoder.fit(train, None, "train_dataset")
    found = train_warnings(train, "train_dataset", args)
    if eval_dataset is not None:
        evaluation = load_labeled(eval_dataset, column_mapping, "eval_dataset")
        encoder.encode(evaluation.labels, "eval_dataset")
        found += split_warnings(evaluation, "eval_dataset")
    if strict:
        raise_if_any(found)
    return found

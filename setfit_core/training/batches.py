"""The step stream of a phase-1 run: which pairs or label groups each step trains on, and how many steps.

Pair losses train on setfit's pairs (`sampling.make_pairs`), cut into batches of `batch_size` pairs.
Group losses (triplets, SupCon) train on label-grouped batches; the `fast` preset's label-balanced
batches hold the same number of texts of every label.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from setfit_core.args import TrainingArguments
from setfit_core.training.sampling import (
    PairSet,
    balanced_per_label,
    group_steps_per_epoch,
    iter_balanced_batches,
    iter_group_batches,
    iter_pair_batches,
    make_pairs,
    pair_steps_per_epoch,
)

# The fast preset's length: FAST_EPOCHS passes over the data, within [minimum, FAST_MAX_STEPS] steps. Two labels
# settle within 20 steps; three or more need about 100 updates however small the data (emotion, 64-shot: 59.6%
# after 30 steps, 70.4% after 100). Chosen on the grid in docs/performance.md, "The fast preset".
FAST_EPOCHS, FAST_MAX_STEPS = 20.0, 240
FAST_MIN_STEPS_BINARY, FAST_MIN_STEPS = 20, 100


@dataclass
class BatchStream:
    """The batches of one training run: pairs or label groups, and how many steps it has."""

    kind: str  # "pair" or "group", the loss's kind
    total_steps: int
    batches: Iterator
    num_pairs: int = 0


def sample_pairs(label_ids: np.ndarray, args: TrainingArguments) -> PairSet:
    """The pairs phase 1 trains on, for these class ids and arguments (deterministic for args.seed)."""
    max_pairs = args.max_steps * args.embedding_batch_size if args.max_steps > 0 else -1
    return make_pairs(label_ids, args.seed, args.sampling_strategy, args.num_iterations, max_pairs)


def batch_stream(label_ids: np.ndarray, args: TrainingArguments, kind: str, max_steps: int,
                 pairs: PairSet | None = None) -> BatchStream:
    """The batches for a loss of `kind`, capped at `max_steps` when positive. `pairs` (indices into the
    texts) replaces the pairs `sample_pairs` would draw, e.g. when an earlier pipeline stage stored them."""
    bs, epochs = args.embedding_batch_size, args.embedding_num_epochs
    if kind == "pair":
        pairs = pairs if pairs is not None else sample_pairs(label_ids, args.replace(max_steps=max_steps))
        total = pair_steps_per_epoch(len(pairs), bs) * epochs
        batches = iter_pair_batches(pairs, bs, epochs, args.seed)
        return BatchStream(kind, min(total, max_steps) if max_steps > 0 else total, batches, len(pairs))
    if args.sampling_strategy == "label_balanced":
        per_label = balanced_per_label(label_ids, bs)
        num_labels = len(np.unique(label_ids))
        total = max_steps if max_steps > 0 else fast_steps(len(label_ids), per_label * num_labels, num_labels)
        return BatchStream(kind, total, iter_balanced_batches(label_ids, per_label, total, args.seed))
    total = group_steps_per_epoch(label_ids, bs, args.samples_per_label) * epochs
    batches = iter_group_batches(label_ids, bs, epochs, args.seed, args.samples_per_label)
    return BatchStream(kind, min(total, max_steps) if max_steps > 0 else total, batches)


def describe_phase1(label_ids: np.ndarray, args: TrainingArguments) -> str:
    """One line saying what phase 1 trains on for this data: the loss, the batches, how many steps and the
    learning rate. The `fast` preset's batches and length follow from the data (classes, examples per
    class), so this is where a user sees what it chose."""
    label_ids = np.asarray(label_ids)
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v!r}"
                       for k, v in (args.loss_params or {}).items())
    loss = f"{args.loss_name}({params})" if params else args.loss_name
    lr = f"body learning rate {args.body_embedding_learning_rate:g}"
    if getattr(args._loss_class, "kind", "pair") == "pair":
        pairs = f"num_iterations={args.num_iterations}" if args.num_iterations else args.sampling_strategy
        return (f"{loss} on setfit's pairs ({pairs}), {args.embedding_batch_size} pairs a step, "
                f"{args.embedding_num_epochs} epoch(s), {lr}")
    if args.sampling_strategy != "label_balanced":
        return (f"{loss} on label groups of {args.samples_per_label}, {args.embedding_batch_size} texts a step, "
                f"{args.embedding_num_epochs} epoch(s), {lr}")
    classes, counts = np.unique(label_ids, return_counts=True)
    per_label = balanced_per_label(label_ids, args.embedding_batch_size)
    batch_texts = int(np.minimum(counts, per_label).sum())
    if args.max_steps > 0:
        steps, why = args.max_steps, "max_steps"
    else:
        steps = fast_steps(len(label_ids), per_label * len(classes), len(classes))
        why = (f"{FAST_EPOCHS:g} passes over {len(label_ids):,} texts, "
               f"within {fast_min_steps(len(classes))}–{FAST_MAX_STEPS} for {len(classes)} labels")
    return (f"{loss} on label-balanced batches of {per_label} texts x {len(classes)} labels ({batch_texts} texts), "
            f"{steps} steps ({why}), {lr}")


def fast_min_steps(num_labels: int) -> int:
    return FAST_MIN_STEPS_BINARY if num_labels <= 2 else FAST_MIN_STEPS


def fast_steps(num_texts: int, batch_texts: int, num_labels: int) -> int:
    """Steps of the fast preset: FAST_EPOCHS passes over the data, within [fast_min_steps, FAST_MAX_STEPS]."""
    passes = round(FAST_EPOCHS * num_texts / batch_texts)
    return int(min(FAST_MAX_STEPS, max(fast_min_steps(num_labels), passes)))

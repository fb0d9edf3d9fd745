"""Training examples for the contrastive phase: text pairs, or label-grouped batches.

Pairs follow setfit 1.2.0's sampler: candidates are all unordered index pairs including self-pairs,
shuffled; positives share a label (multi-label: any label). Counts: `num_iterations=k` gives 2·k·n,
`unique` P+Q, `undersampling` 2·min(P,Q), `oversampling` 2·max(P,Q) (the short side wraps around),
capped at `max_pairs`. Pairs are index arrays (12 bytes a pair), never lists of text dicts; batches
are produced lazily. Unlike setfit, the shuffle uses the caller's seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairSet:
    """Pairs as parallel arrays: indices into the training texts and a float similarity target (1.0/0.0
    for setfit's labelled pairs; a teacher's cosine similarity in distillation)."""

    first: np.ndarray
    second: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.label)


def _candidates(labels: np.ndarray, rng: np.random.Generator, max_per_side: int) -> tuple[np.ndarray, ...]:
    n = len(labels)
    first, second = np.triu_indices(n, 0)
    order = rng.permutation(len(first))
    first, second = first[order].astype(np.int32), second[order].astype(np.int32)
    if labels.ndim == 2:  # multi-hot rows: positive when any label is shared
        positive = (labels[first] & labels[second]).any(axis=1)
    else:
        positive = labels[first] == labels[second]
    pos = (first[positive], second[positive])
    neg = (first[~positive], second[~positive])
    if max_per_side > 0:
        pos = (pos[0][:max_per_side], pos[1][:max_per_side])
        neg = (neg[0][:max_per_side], neg[1][:max_per_side])
    return pos[0], pos[1], neg[0], neg[1]


def pair_counts(
    num_positive: int, num_negative: int, n: int, sampling_strategy: str, num_iterations: int | None
) -> tuple[int, int]:
    """How many positive and negative pairs to draw (before the max_pairs cap)."""
    if num_iterations:
        return num_iterations * n, num_iterations * n
    if sampling_strategy == "unique":
        return num_positive, num_negative
    if sampling_strategy == "undersampling":
        m = min(num_positive, num_negative)
        return m, m
    if sampling_strategy == "oversampling":
        m = max(num_positive, num_negative)
        return m, m
    raise ValueError(
        f"'sampling_strategy' for pairs must be one of ['oversampling', 'undersampling', 'unique']; "
        f"got {sampling_strategy!r}"
    )


def make_pairs(
    labels: np.ndarray,
    seed: int,
    sampling_strategy: str = "oversampling",
    num_iterations: int | None = None,
    max_pairs: int = -1,
) -> PairSet:
    """Pairs for class ids `labels` ([n] ints, or [n, K] multi-hot)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    max_per_side = max_pairs // 2 if max_pairs > 0 else -1
    pos_a, pos_b, neg_a, neg_b = _candidates(labels, rng, max_per_side)
    if len(pos_a) == 0 or len(neg_a) == 0:
        side = "negative" if len(neg_a) == 0 else "positive"
        raise ValueError(f"the training data yields no {side} pairs; it needs at least two examples with "
                         f"different labels")
    n_pos, n_neg = pair_counts(len(pos_a), len(neg_a), len(labels), sampling_strategy, num_iterations)
    pos_idx = np.arange(n_pos) % len(pos_a)  # wrap around the shorter side, as setfit does
    neg_idx = np.arange(n_neg) % len(neg_a)
    first, second, label = _interleave(pos_a[pos_idx], pos_b[pos_idx], neg_a[neg_idx], neg_b[neg_idx])
    if max_pairs > 0:
        first, second, label = first[:max_pairs], second[:max_pairs], label[:max_pairs]
    return PairSet(first, second, label)


def sample_text_pairs(
    num_texts: int, seed: int, num_iterations: int | None = None, max_pairs: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled pairs (i < j) of `num_texts` texts, as the distillation trainer trains on them.

    As setfit's distillation sampler: `num_iterations=k` gives k·n pairs, otherwise every pair once,
    shuffled, capped at `max_pairs`; more pairs than exist wrap around. Unlike setfit, no self-pairs (a
    text with itself has cosine 1.0 under any body, so it teaches nothing) and the caller's seed is used.
    Pairs are drawn by their index in the upper triangle, so no list of all n(n-1)/2 candidates is built.
    """
    if num_texts < 2:
        raise ValueError(f"pairs need at least 2 texts; got {num_texts}")
    total = num_texts * (num_texts - 1) // 2
    count = num_iterations * num_texts if num_iterations else total
    if max_pairs > 0:
        count = min(count, max_pairs)
    rng = np.random.default_rng([seed, 4])  # its own stream, apart from the labelled sampler's
    if count <= total:
        linear = rng.choice(total, size=count, replace=False)
    else:
        linear = rng.permutation(total)[np.arange(count) % total]
    # Row i of the strict upper triangle holds pairs (i, i+1..n-1) and starts at starts[i].
    starts = np.concatenate([[0], np.cumsum(np.arange(num_texts - 1, 0, -1))])
    first = np.searchsorted(starts, linear, side="right") - 1
    second = first + 1 + (linear - starts[first])
    return first.astype(np.int32), second.astype(np.int32)


def _interleave(pa: np.ndarray, pb: np.ndarray, na: np.ndarray, nb: np.ndarray) -> tuple[np.ndarray, ...]:
    """pos0, neg0, pos1, neg1, ..., then the rest of the longer side (setfit's zip_longest order)."""
    common = min(len(pa), len(na))
    first = np.empty(len(pa) + len(na), dtype=np.int32)
    second = np.empty_like(first)
    label = np.empty(len(first), dtype=np.float32)
    first[0 : 2 * common : 2], second[0 : 2 * common : 2], label[0 : 2 * common : 2] = pa[:common], pb[:common], 1.0
    first[1 : 2 * common : 2], second[1 : 2 * common : 2], label[1 : 2 * common : 2] = na[:common], nb[:common], 0.0
    rest_a, rest_b, rest_label = (pa, pb, 1.0) if len(pa) > common else (na, nb, 0.0)
    first[2 * common :], second[2 * common :], label[2 * common :] = rest_a[common:], rest_b[common:], rest_label
    return first, second, label


def iter_pair_batches(
    pairs: PairSet, batch_size: int, num_epochs: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Shuffled batches of (first, second, label) for every epoch; the last batch may be short."""
    rng = np.random.default_rng([seed, 1])  # its own stream: pair choice and pair order stay independent
    for _ in range(num_epochs):
        order = rng.permutation(len(pairs))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield pairs.first[idx], pairs.second[idx], pairs.label[idx]


def pair_steps_per_epoch(num_pairs: int, batch_size: int) -> int:
    return -(-num_pairs // batch_size)


def iter_group_batches(
    labels: np.ndarray, batch_size: int, num_epochs: int, seed: int, samples_per_label: int = 2
) -> Iterator[np.ndarray]:
    """Label-grouped batches for triplet/SupCon losses: each label contributes `samples_per_label`
    consecutive examples, so every anchor in a batch has a positive."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("triplet and SupCon losses need single-label data; use a pair loss for multi-label")
    rng = np.random.default_rng([seed, 2])
    for _ in range(num_epochs):
        chunks = []
        for lab in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == lab))
            usable = len(members) - len(members) % samples_per_label
            chunks.extend(np.split(members[:usable], usable // samples_per_label) if usable else [])
        order = rng.permutation(len(chunks))
        flat = np.concatenate([chunks[i] for i in order]) if chunks else np.empty(0, dtype=np.int64)
        for start in range(0, len(flat), batch_size):
            yield flat[start : start + batch_size]


def group_steps_per_epoch(labels: np.ndarray, batch_size: int, samples_per_label: int = 2) -> int:
    labels = np.asarray(labels)
    usable = sum(c - c % samples_per_label for c in np.unique(labels, return_counts=True)[1])
    return max(1, -(-usable // batch_size))


def balanced_per_label(labels: np.ndarray, batch_texts: int) -> int:
    """Examples per label in a label-balanced batch of about `batch_texts` texts (2 at least)."""
    classes, counts = np.unique(labels, return_counts=True)
    return int(max(2, min(counts.max(), batch_texts // len(classes))))


def iter_balanced_batches(labels: np.ndarray, per_label: int, num_steps: int, seed: int) -> Iterator[np.ndarray]:
    """`num_steps` batches that each hold `per_label` examples of every label (fewer if a label has
    fewer), cycling through each label's examples in a fresh shuffled order. Every batch covers every
    label, so in-batch contrastive losses always see all classes, however many there are."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("label-balanced batches need single-label data")
    rng = np.random.default_rng([seed, 3])
    members = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    streams = [_cycle(m, rng) for m in members]
    for _ in range(num_steps):
        yield np.concatenate([[next(stream) for _ in range(min(per_label, len(m)))]
                              for stream, m in zip(streams, members, strict=True)])


def _cycle(items: np.ndarray, rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield from rng.permutation(items).tolist()

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from setfit_core.training.sampling import iter_balanced_batches, iter_group_batches, iter_pair_batches, make_pairs


def labels_for(classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def expected(classes: int, n: int, strategy: str) -> int:
    """setfit's sampler: P = C·N(N+1)/2 positives (self-pairs included), Q = C(C−1)/2·N² negatives."""
    p = classes * n * (n + 1) // 2
    q = classes * (classes - 1) // 2 * n * n
    return {"oversampling": 2 * max(p, q), "undersampling": 2 * min(p, q), "unique": p + q}[strategy]


@pytest.mark.parametrize(("classes", "n"), [(2, 8), (2, 64), (4, 8), (5, 8), (5, 64)])
@pytest.mark.parametrize("strategy", ["oversampling", "undersampling", "unique"])
def test_pair_counts_match_setfit_formulas(classes, n, strategy):
    pairs = make_pairs(labels_for(classes, n), seed=0, sampling_strategy=strategy)
    assert len(pairs) == expected(classes, n, strategy)


def test_known_counts_for_2x8():
    labels = labels_for(2, 8)
    assert len(make_pairs(labels, 0, "oversampling")) == 144
    assert len(make_pairs(labels, 0, "undersampling")) == 128
    assert len(make_pairs(labels, 0, "unique")) == 136
    assert len(make_pairs(labels, 0, num_iterations=20)) == 640


@pytest.mark.parametrize(("classes", "n"), [(2, 8), (5, 64)])
def test_num_iterations_gives_2kn_pairs_half_positive(classes, n):
    pairs = make_pairs(labels_for(classes, n), seed=1, num_iterations=3)
    assert len(pairs) == 2 * 3 * classes * n
    assert pairs.label.sum() == 3 * classes * n


def test_labels_say_whether_a_pair_shares_a_class():
    labels = labels_for(3, 5)
    pairs = make_pairs(labels, seed=3, sampling_strategy="unique")
    same = labels[pairs.first] == labels[pairs.second]
    np.testing.assert_array_equal(same, pairs.label == 1.0)
    # unique = every unordered pair, self-pairs included, exactly once
    unordered = {tuple(sorted(p)) for p in zip(pairs.first.tolist(), pairs.second.tolist(), strict=True)}
    assert unordered == set(itertools.combinations_with_replacement(range(15), 2))


def test_multi_label_positive_when_any_label_is_shared():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 1]])
    n = len(labels)
    candidates = list(itertools.combinations_with_replacement(range(n), 2))
    p = sum(bool((labels[i] & labels[j]).any()) for i, j in candidates)
    q = len(candidates) - p
    assert len(make_pairs(labels, 0, "unique")) == p + q
    assert len(make_pairs(labels, 0, "oversampling")) == 2 * max(p, q)
    pairs = make_pairs(labels, 0, "undersampling")
    assert len(pairs) == 2 * min(p, q)
    shared = (labels[pairs.first] & labels[pairs.second]).any(axis=1)
    np.testing.assert_array_equal(shared, pairs.label == 1.0)


def test_max_pairs_caps_the_pairs():
    pairs = make_pairs(labels_for(5, 64), seed=0, sampling_strategy="oversampling", max_pairs=10 * 16)
    assert len(pairs) == 160


def test_same_seed_same_pairs_other_seed_other_pairs():
    labels = labels_for(4, 8)
    a, b, c = (make_pairs(labels, s, num_iterations=5) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.first, b.first)
    np.testing.assert_array_equal(a.second, b.second)
    assert not np.array_equal(a.first, c.first)
    batches = lambda seed: [x[0].tolist() for x in iter_pair_batches(a, 16, 2, seed)]  # noqa: E731
    assert batches(0) == batches(0) != batches(1)


def test_5x64_oversampling_stays_small_in_memory():
    """81,920 pairs as index arrays (~1 MB), never as a list of text dicts (~tens of MB)."""
    labels = labels_for(5, 64)
    tracemalloc.start()
    pairs = make_pairs(labels, seed=0, sampling_strategy="oversampling")
    steps = sum(1 for _ in iter_pair_batches(pairs, 16, 1, seed=0))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(pairs) == 81_920 and steps == 5_120
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_pair_batches_cover_every_pair_once_per_epoch():
    pairs = make_pairs(labels_for(2, 8), seed=0, num_iterations=20)
    seen = np.concatenate([b[2] for b in iter_pair_batches(pairs, 16, 1, seed=0)])
    assert len(seen) == 640 and seen.sum() == 320


def test_no_negative_pairs_is_a_clear_error():
    with pytest.raises(ValueError, match="no negative pairs"):
        make_pairs(np.array([[1, 1], [1, 0], [1, 1]]), seed=0)


def test_group_batches_put_pairs_of_a_label_together():
    labels = labels_for(4, 6)
    batches = list(iter_group_batches(labels, batch_size=8, num_epochs=1, seed=0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(24))
    for batch in batches:
        for start in range(0, len(batch), 2):
            assert labels[batch[start]] == labels[batch[start + 1]]


def test_balanced_batches_cover_every_label_each_step():
    from setfit_core.training.sampling import balanced_per_label

    labels = np.repeat(np.arange(6), [8, 8, 8, 8, 8, 3])
    per_label = balanced_per_label(labels, 64)
    assert per_label == 8
    batches = list(iter_balanced_batches(labels, per_label, num_steps=5, seed=0))
    assert len(batches) == 5
    for batch in batches:
        counts = np.bincount(labels[batch], minlength=6)
        assert counts.tolist() == [8, 8, 8, 8, 8, 3]
    again = list(iter_balanced_batches(labels, per_label, num_steps=5, seed=0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))

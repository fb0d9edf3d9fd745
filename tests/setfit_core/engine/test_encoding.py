from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core.engine.encoding import TokenCache, cap_tokens, encode_rows, length_buckets
from setfit_core.model_io.body_loading import load_body
from setfit_core.tokenization import tokenize


@pytest.mark.parametrize("split_cost", [0, 10, 48, 10_000])
def test_length_buckets_partition_and_never_cost_more_than_one_batch(split_cost):
    lengths = np.random.default_rng(0).integers(3, 60, size=28)
    groups = length_buckets(lengths, split_cost)
    assert sorted(np.concatenate(groups).tolist()) == list(range(28))
    cost = sum(len(g) * lengths[g].max() + split_cost for g in groups)
    assert cost <= len(lengths) * lengths.max() + split_cost
    if split_cost == 10_000:
        assert len(groups) == 1


def test_buckets_group_similar_lengths():
    lengths = np.array([5, 50, 6, 49, 5, 51])
    groups = length_buckets(lengths, split_cost=10)
    assert sorted(sorted(lengths[g].tolist()) for g in groups) == [[5, 5, 6], [49, 50, 51]]


def test_bucketed_embeddings_equal_one_padded_batch(tiny_model_dir):
    body = load_body(tiny_model_dir, device="cpu")
    body.eval()
    texts = ["good", "a very good movie with a great actor", "bad", "i love it so much", "awful film", "so sad"]
    cache = TokenCache(body, texts, None)
    rows = np.array([4, 1, 0, 3])
    with torch.no_grad():
        bucketed = encode_rows(body, cache, rows, split_cost=0)
        plain = body(tokenize(body, [texts[i] for i in rows]))["sentence_embedding"]
    torch.testing.assert_close(bucketed, plain, rtol=1e-4, atol=1e-5)


def test_cap_tokens_splits_groups_to_fit_and_keeps_every_row():
    lengths = np.array([10, 12, 30, 31, 100, 9])
    groups = [np.array([0, 1, 5]), np.array([2, 3, 4])]
    capped = cap_tokens(groups, lengths, max_tokens=64)
    assert sorted(np.concatenate(capped).tolist()) == list(range(6))
    for group in capped:  # within the cap, or a single text longer than it
        assert len(group) * lengths[group].max() <= 64 or len(group) == 1
    # 3 texts x 12 tokens fit in 64; 100-token texts go one by one.
    assert [g.tolist() for g in capped] == [[0, 1, 5], [2], [3], [4]]


def test_capped_micro_batches_give_the_same_embeddings(tiny_model_dir):
    body = load_body(tiny_model_dir, device="cpu")
    body.eval()
    texts = ["good", "a very good movie with a great actor", "bad", "i love it so much", "awful film", "so sad"]
    cache = TokenCache(body, texts, None)
    rows = np.array([4, 1, 0, 3, 5, 2])
    calls = []
    body[0].register_forward_pre_hook(lambda module, inputs: calls.append(1))
    with torch.no_grad():
        whole = encode_rows(body, cache, rows, split_cost=10**6)
        assert len(calls) == 1  # one micro-batch
        capped = encode_rows(body, cache, rows, split_cost=10**6, max_tokens=8)
    assert len(calls) >= 4  # at most 2 texts of >= 3 tokens per micro-batch
    torch.testing.assert_close(capped, whole, rtol=1e-4, atol=1e-5)

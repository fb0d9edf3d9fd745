from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core.batching import TokenCache, encode_rows, length_buckets
from setfit_core.body_loading import load_body
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

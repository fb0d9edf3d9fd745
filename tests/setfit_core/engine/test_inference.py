"""Token-count batching for encode(): same embeddings as sentence-transformers, in input order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel
from setfit_core.engine.inference import embed, length_sorted_batches, token_counts

# Lengths from 1 to 20 words, shuffled so that input order differs from length order.
WORDS = "good movie great film bad plot awful actor nice very so happy sad i love it hate fine poor terrible".split()
TEXTS = [" ".join(WORDS[: (7 * i) % 20 + 1]) for i in range(40)]


@pytest.fixture(scope="module")
def body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


def test_token_counts_are_the_padded_lengths_the_body_sees(body):
    counts = token_counts(body, TEXTS)
    for text, count in zip(TEXTS, counts, strict=True):
        assert int(body.tokenize([text])["attention_mask"].sum()) == count


def test_batches_cover_every_text_once_longest_first_within_budget():
    counts = np.array([5, 40, 12, 40, 3, 30, 7, 100, 1])
    batches = length_sorted_batches(counts, batch_size=3, token_budget=90)
    flat = [int(i) for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(counts)))
    assert [counts[i] for i in flat] == sorted(counts, reverse=True)
    assert list(batches[0]) == [7]  # longer than the budget: alone
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * counts[batch[0]] <= 90


def test_no_budget_means_batches_of_batch_size():
    batches = length_sorted_batches(np.full(10, 3), batch_size=4, token_budget=None)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        length_sorted_batches(np.array([3, 4]), batch_size=0, token_budget=None)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("budget", [None, 16, 64])
def test_embeddings_match_sentence_transformers_in_input_order(body, normalize, budget):
    expected = body.encode(TEXTS, batch_size=8, convert_to_tensor=True, normalize_embeddings=normalize)
    got = embed(body, TEXTS, batch_size=8, normalize=normalize, cpu_token_budget=budget)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_embeddings_do_not_depend_on_batching(body):
    one_by_one = embed(body, TEXTS, batch_size=1, normalize=True)
    all_at_once = embed(body, TEXTS, batch_size=len(TEXTS), normalize=True, cpu_token_budget=10**6)
    torch.testing.assert_close(one_by_one, all_at_once, atol=1e-5, rtol=1e-4)


def test_embeddings_can_feed_a_trainable_head(body):
    """Not inference tensors: a differentiable head's backward may save them."""
    embeddings = embed(body, TEXTS[:4], batch_size=2, normalize=True)
    assert not embeddings.is_inference()
    layer = torch.nn.Linear(embeddings.shape[1], 2)
    layer(embeddings).sum().backward()
    assert layer.weight.grad is not None


def test_encode_keeps_order_shapes_and_progress_bar(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    many = model.encode(TEXTS, batch_size=4, show_progress_bar=True)
    assert many.shape == (len(TEXTS), 32)
    single = model.encode(TEXTS[5])
    torch.testing.assert_close(torch.from_numpy(single), torch.from_numpy(many[5]), atol=1e-5, rtol=1e-4)
    assert model.encode([]).shape[0] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_gpu_embeddings_match_sentence_transformers(tiny_model_dir):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cuda").model_body
    expected = body.encode(TEXTS, batch_size=8, convert_to_tensor=True, normalize_embeddings=True)
    got = embed(body, TEXTS, batch_size=8, normalize=True)
    assert got.device.type == "cuda" and not got.is_inference()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)

"""Token-count batching for encode(): same embeddings as sentence-transformers, in input order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel
from setfit_core.engine.inference import (
    GPU_BATCH_SIZE,
    HalfPrecisionBody,
    _checked,
    _embed_ahead,
    check_inference_dtype,
    embed,
    inference_torch_dtype,
    length_sorted_batches,
    resolve_batch_size,
    token_counts,
)

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


# ---- the GPU path's parts: precision, batch size, tokenising ahead ----------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("float32", "float32"), ("float16", "float16"), ("bfloat16", "bfloat16"), ("auto", "auto"),
    (torch.float16, "float16"), (torch.bfloat16, "bfloat16"),
])
def test_inference_dtype_values(value, expected):
    assert check_inference_dtype(value) == expected


@pytest.mark.parametrize("value", ["fp16", "half", "float64", torch.float64, 16])
def test_an_unknown_inference_dtype_is_refused_by_name(value):
    with pytest.raises(ValueError, match=r"'inference_dtype' must be None \(float32\) or one of \['float32', "
                                         r"'float16', 'bfloat16', 'auto'\]; got "):
        check_inference_dtype(value)


@pytest.mark.parametrize("value", ["float16", "bfloat16"])
def test_half_precision_is_refused_off_the_gpu_with_the_fix(value):
    with pytest.raises(ValueError, match=rf"inference_dtype='{value}' is for GPU prediction .* this model has device "
                                         r"'cpu'\. Load it with device='cuda', or leave inference_dtype None"):
        inference_torch_dtype(value, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"this model has backend='onnx'"):
        inference_torch_dtype(value, torch.device("cpu"), backend="onnx")


def test_float32_and_auto_off_the_gpu_mean_float32():
    for value in (None, "float32", "auto"):
        assert inference_torch_dtype(value, torch.device("cpu")) is None
    assert inference_torch_dtype("auto", torch.device("cpu"), backend="onnx") is None
    # A CUDA device object needs no GPU to exist; the explicit halves map to their dtypes there.
    assert inference_torch_dtype("float16", torch.device("cuda")) is torch.float16
    assert inference_torch_dtype("bfloat16", torch.device("cuda")) is torch.bfloat16


def test_default_batch_size_is_large_on_a_gpu_only():
    assert resolve_batch_size(None, torch.device("cpu"), cpu_default=32) == 32
    assert resolve_batch_size(None, torch.device("cuda"), cpu_default=32) == GPU_BATCH_SIZE == 256
    assert resolve_batch_size(8, torch.device("cuda"), cpu_default=32) == 8  # an explicit size is kept


@pytest.mark.parametrize("value", [0, -4, True, 2.0, "64"])
def test_a_bad_batch_size_is_refused(value):
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1 \(or None: 256 on a GPU, 32 on a CPU\); got"):
        resolve_batch_size(value, torch.device("cpu"), cpu_default=32)


def test_embed_refuses_half_precision_on_a_cpu_body(body):
    with pytest.raises(ValueError, match=r"half-precision inference \(torch.float16\) runs on a CUDA device only"):
        embed(body, TEXTS, batch_size=8, normalize=True, dtype=torch.float16)


def test_non_finite_half_precision_embeddings_are_an_error_that_names_the_fix():
    embeddings = torch.tensor([[1.0, float("inf")], [0.5, 0.5], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match=r"inference_dtype 'float16' gave non-finite embeddings for 2 of 3 texts: "
                                         r"this body overflows it\. Use 'bfloat16'"):
        _checked(embeddings, torch.float16)
    assert _checked(embeddings, None) is embeddings  # float32 results are the body's own business


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tokenising_ahead_in_threads_keeps_every_batch_in_order(body, threads):
    """The GPU loop, run on the CPU (no pinned memory): with several threads tokenising ahead, the embeddings
    are those of tokenising and running each batch in turn."""
    counts = np.array([len(t) for t in TEXTS])
    batches = length_sorted_batches(counts, batch_size=3, token_budget=None)
    got = _embed_ahead(body, TEXTS, batches, batches, normalize=True, pin=False, threads=threads)
    expected = torch.cat([embed(body, [TEXTS[i] for i in batch], batch_size=3, normalize=True) for batch in batches])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_tokenising_ahead_passes_on_a_tokenising_error(body):
    texts = [*TEXTS[:6], 12345]  # not a text: the tokenising thread fails on the third batch
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([6, 4]), np.array([5])]
    with pytest.raises((TypeError, ValueError)):
        _embed_ahead(body, texts, batches, batches, normalize=True, pin=False, threads=2)


def test_a_half_precision_copy_gives_float32_close_to_float32_and_is_remade_only_when_weights_change(body):
    """The half-precision path, on a bfloat16 copy on the CPU (the GPU's float16/bfloat16 are tested on a GPU):
    float32 embeddings, normalised in float32, close to the float32 ones; the copy is reused until a weight
    changes in place, as a training step changes it."""
    halves = HalfPrecisionBody()
    half_body = halves.get(body, torch.bfloat16)
    assert half_body is not body and next(half_body.parameters()).dtype == torch.bfloat16
    assert next(body.parameters()).dtype == torch.float32  # the body itself is untouched
    batches = length_sorted_batches(np.array([len(t) for t in TEXTS]), batch_size=8, token_budget=None)
    half = _embed_ahead(half_body, TEXTS, batches, batches, normalize=True, pin=False, threads=2)
    full = _embed_ahead(body, TEXTS, batches, batches, normalize=True, pin=False, threads=2)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5, rtol=0)
    assert float(torch.nn.functional.cosine_similarity(half, full).min()) > 0.99
    assert not torch.equal(half, full)  # the forward really ran in bfloat16
    assert halves.get(body, torch.bfloat16) is half_body
    with torch.no_grad():
        next(body.parameters()).add_(0.0)  # an in-place update, as an optimizer step makes
    assert halves.get(body, torch.bfloat16) is not half_body

"""`SetFitModel(inference_dtype=...)` and the batch size by device: half precision is a GPU option, refused
on a CPU; on a GPU its predictions agree with float32's. The GPU tests skip without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel
from tests.conftest import TINY_WORDS

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")

POS = ["good movie", "great film", "nice plot", "i love it", "very good actor", "so happy", "fine film", "great"]
NEG = ["bad movie", "awful film", "poor plot", "i hate it", "very bad actor", "so sad", "terrible film", "awful"]


def fitted(tiny_model_dir: str, device: str, **kwargs) -> SetFitModel:
    """The tiny body with a LogisticRegression head fitted on 16 texts (no contrastive phase: fast)."""
    model = SetFitModel.from_pretrained(tiny_model_dir, device=device, **kwargs)
    model.fit(POS + NEG, [1] * 8 + [0] * 8, num_epochs=1, show_progress_bar=False)
    return model


def many_texts(n: int, seed: int = 0) -> list[str]:
    """`n` texts of 2-40 words of the tiny vocabulary: several batches of several lengths."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(TINY_WORDS, size=int(rng.integers(2, 40)))) for _ in range(n)]


def test_half_precision_on_a_cpu_is_refused_at_load_with_the_fix(tiny_model_dir):
    with pytest.raises(ValueError, match=r"inference_dtype='float16' is for GPU prediction .* device 'cpu'\. Load it "
                                         r"with device='cuda', or leave inference_dtype None \(float32\)"):
        SetFitModel.from_pretrained(tiny_model_dir, device="cpu", inference_dtype="float16")


def test_an_unknown_inference_dtype_is_refused_before_loading(tiny_model_dir):
    with pytest.raises(ValueError, match=r"'inference_dtype' must be None \(float32\) or one of .*; got 'fp16'"):
        SetFitModel.from_pretrained(tiny_model_dir, device="cpu", inference_dtype="fp16")


def test_auto_is_float32_on_a_cpu_and_the_option_is_checked_when_set(tiny_model_dir):
    model = fitted(tiny_model_dir, "cpu")
    texts = many_texts(20)
    expected = model.predict_proba(texts, as_numpy=True)
    model.inference_dtype = "auto"
    assert model.inference_dtype == "auto"
    np.testing.assert_array_equal(model.predict_proba(texts, as_numpy=True), expected)
    with pytest.raises(ValueError, match=r"'inference_dtype' must be None \(float32\) or one of"):
        model.inference_dtype = "half"
    model.inference_dtype = "bfloat16"  # a value that is fine on a GPU: refused when this CPU model predicts
    with pytest.raises(ValueError, match=r"inference_dtype='bfloat16' is for GPU prediction"):
        model.predict(texts)


def test_default_batch_size_on_a_cpu_is_setfits_and_a_bad_one_is_refused(tiny_model_dir, monkeypatch):
    from setfit_core import modeling

    model = fitted(tiny_model_dir, "cpu")
    seen, real_embed = [], modeling.embed

    def embed(body, texts, batch_size, *args, **kwargs):
        seen.append(batch_size)
        return real_embed(body, texts, batch_size, *args, **kwargs)

    monkeypatch.setattr(modeling, "embed", embed)
    model.predict(many_texts(5))
    model.predict_proba(many_texts(5), batch_size=7)
    assert seen == [32, 7]
    with pytest.raises(ValueError, match=r"batch_size must be an int >= 1 .*; got 0"):
        model.encode(many_texts(3), batch_size=0)


@needs_cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_half_precision_predictions_agree_with_float32(tiny_model_dir, dtype):
    model = fitted(tiny_model_dir, "cuda")
    texts = many_texts(600)
    full_embeddings = model.encode(texts, as_numpy=False)
    full = model.predict(texts, as_numpy=True)
    model.inference_dtype = dtype
    half_embeddings = model.encode(texts, as_numpy=False)
    half = model.predict(texts, as_numpy=True)
    assert half_embeddings.dtype == torch.float32 and half_embeddings.device.type == "cuda"
    assert float(torch.nn.functional.cosine_similarity(half_embeddings, full_embeddings).min()) > 0.99
    assert not torch.equal(half_embeddings, full_embeddings)  # the forward really ran in half precision
    assert (half == full).mean() >= 0.99


@needs_cuda
def test_gpu_auto_is_bfloat16_where_the_gpu_has_it_and_normalised_embeddings_stay_unit(tiny_model_dir):
    from setfit_core.engine.inference import inference_torch_dtype

    model = fitted(tiny_model_dir, "cuda", normalize_embeddings=True, inference_dtype="auto")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert inference_torch_dtype(model.inference_dtype, model.device) is expected
    embeddings = model.encode(many_texts(300), as_numpy=False)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(300, device="cuda"), atol=1e-5, rtol=0)


@needs_cuda
def test_gpu_default_batch_is_large_and_gives_float32_results_of_small_batches(tiny_model_dir):
    model = fitted(tiny_model_dir, "cuda")
    texts = many_texts(700)  # three default (256) batches
    torch.testing.assert_close(model.encode(texts, as_numpy=False), model.encode(texts, batch_size=8, as_numpy=False),
                               atol=1e-5, rtol=1e-4)


@needs_cuda
def test_gpu_half_precision_is_for_prediction_the_head_is_fitted_on_float32(tiny_model_dir):
    full = fitted(tiny_model_dir, "cuda")
    half = fitted(tiny_model_dir, "cuda", inference_dtype="float16")
    np.testing.assert_array_equal(half.model_head.coef_, full.model_head.coef_)
    assert half.inference_dtype == "float16"  # kept for prediction after the fit

"""Dropout from 16-bit random integers during CPU phase 1, and phase 1's own attention that draws its mask
the same way: the distribution, the gradient, the swap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.cpu import dropout as cd
from setfit_core.engine.cpu.attention import ATTENTION_NAME, eager_attention, own_attention
from setfit_core.training.embedding_phase import train_body


def test_mask_drops_p_of_the_elements_and_keeps_the_expectation():
    torch.manual_seed(0)
    keep, scale = cd.keep_mask((1000, 1000), 0.1)
    assert keep.dtype == torch.bool and keep.shape == (1000, 1000)
    assert abs(1 - keep.float().mean().item() - 0.1) < 0.002  # binomial sd is 0.0003
    assert scale == pytest.approx(65536 / (65536 - 6554))
    # Every 16-bit lane of the 64-bit draws is uniform (random_() without a range leaves the top bit 0).
    for lane in range(4):
        assert abs(1 - keep.view(-1)[lane::4].float().mean().item() - 0.1) < 0.004
    x = torch.rand(1000, 1000) + 0.5
    torch.testing.assert_close(cd.fast_dropout(x, 0.1, True).mean(), x.mean(), atol=2e-3, rtol=0)


def test_gradient_uses_the_forward_mask_and_scale():
    torch.manual_seed(1)
    x = (torch.rand(64, 48) + 1).requires_grad_()
    y = cd.fast_dropout(x, 0.25, True)
    kept = y != 0
    assert 0.15 < 1 - kept.float().mean().item() < 0.35
    torch.testing.assert_close(y[kept], x[kept] * (65536 / (65536 - 16384)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() * (65536 / (65536 - 16384)))


def test_no_dropout_in_eval_or_at_p0_and_torch_decides_p1():
    x = torch.randn(8, 8)
    assert cd.fast_dropout(x, 0.1, False) is x
    assert cd.fast_dropout(x, 0.0, True) is x
    assert torch.count_nonzero(cd.fast_dropout(x, 1.0, True)) == 0


def test_seeded_masks_repeat():
    torch.manual_seed(3)
    a = cd.keep_mask((257,), 0.1)[0]
    torch.manual_seed(3)
    assert torch.equal(a, cd.keep_mask((257,), 0.1)[0])


@pytest.fixture
def body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


def _dropouts(module):
    return [m for m in module.modules() if isinstance(m, nn.Dropout)]


def test_swap_inside_and_restore_after_also_on_error(body):
    hf = body[0].auto_model
    originals, attention = _dropouts(body), hf.config._attn_implementation
    assert originals
    with pytest.raises(RuntimeError, match="boom"), cd.fast_dropouts(body) as swapped, own_attention(body) as own:
        assert swapped == len(originals) and own
        assert not _dropouts(body)
        assert sum(isinstance(m, cd.FastDropout) for m in body.modules()) == len(originals)
        assert hf.config._attn_implementation == ATTENTION_NAME
        raise RuntimeError("boom")
    assert _dropouts(body) == originals  # the very same modules
    assert hf.config._attn_implementation == attention


def _random_ops(body, features) -> dict[str, int]:
    """How often a training-mode forward pass calls each of the random-drawing kernels."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        body(features)
    names = ("aten::random_", "aten::bernoulli_", "aten::native_dropout")
    return {e.key: e.count for e in prof.key_averages() if e.key in names}


def test_attention_and_hidden_dropouts_all_draw_from_16_bit_integers(body):
    features = body.tokenize(["good movie", "awful film indeed"])
    body.train()
    layers = body[0].auto_model.config.num_hidden_layers
    assert _random_ops(body, features).get("aten::random_", 0) == 0  # torch's own dropout first
    with cd.fast_dropouts(body), own_attention(body):
        drawn = _random_ops(body, features)
    # One draw per dropout: attention probabilities, after attention and feed-forward, and the embeddings.
    assert drawn == {"aten::random_": 3 * layers + 1}


def test_eval_outputs_unchanged_inside(body):
    features = body.tokenize(["good movie", "awful film indeed", "so happy"])
    body.eval()
    with torch.no_grad():
        before = body(features)["sentence_embedding"]
        with cd.fast_dropouts(body), own_attention(body):
            inside = body(features)["sentence_embedding"]
    torch.testing.assert_close(inside, before, atol=1e-6, rtol=1e-5)


def _train(tiny_model_dir, tiny_data, fast: bool, no_dropout: bool = False):
    engine = EngineOptions(fast_dropout=fast, bf16_matmul="never")  # fp32 products on both sides
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    if no_dropout:
        for module in _dropouts(body):
            module.p = 0.0
        for module in body.modules():
            if hasattr(module, "dropout") and isinstance(module.dropout, nn.Dropout):
                module.dropout.p = 0.0
    args = TrainingArguments(max_steps=6, seed=5, batch_size=8, show_progress_bar=False)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
    assert result.engine.fast_dropout == result.engine.own_attention == fast
    return result.train_loss, {k: v.clone() for k, v in body.state_dict().items()}


def test_training_with_fast_dropout_repeats_and_restores_the_body(tiny_model_dir, tiny_data):
    loss_a, state_a = _train(tiny_model_dir, tiny_data, fast=True)
    loss_b, state_b = _train(tiny_model_dir, tiny_data, fast=True)
    assert loss_a == loss_b
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    loss_torch, _ = _train(tiny_model_dir, tiny_data, fast=False)
    assert loss_torch != loss_a  # other masks: the switch really swaps the dropout


def test_without_dropout_the_swap_is_the_same_arithmetic(tiny_model_dir, tiny_data):
    loss_fast, fast = _train(tiny_model_dir, tiny_data, fast=True, no_dropout=True)
    loss_torch, plain = _train(tiny_model_dir, tiny_data, fast=False, no_dropout=True)
    assert loss_fast == pytest.approx(loss_torch, rel=1e-5)
    for key in fast:
        torch.testing.assert_close(fast[key], plain[key], atol=1e-5, rtol=1e-4)


def test_attention_takes_boolean_and_additive_masks_alike():
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    attend = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    attend[0, ..., 3:] = False  # the first text's last two tokens are padding
    additive = torch.zeros(2, 1, 5, 5).masked_fill(~attend, torch.finfo(torch.float32).min)
    module = nn.Module().eval()
    out_bool, weights = eager_attention(module, q, k, v, attend)
    out_add, _ = eager_attention(module, q, k, v, additive)
    torch.testing.assert_close(out_bool, out_add)
    assert torch.all(weights[0, ..., 3:] == 0)

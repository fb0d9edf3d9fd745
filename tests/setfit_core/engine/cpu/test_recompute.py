"""CPU phase 1 keeps fewer activations (setfit_core/engine/cpu/recompute.py): cheap outputs are rebuilt in backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from setfit_core import EngineOptions, SetFitModel, TrainingArguments
from setfit_core.engine.cpu import matmul as cm
from setfit_core.engine.cpu import recompute
from setfit_core.engine.cpu.attention import own_attention
from setfit_core.engine.cpu.dropout import fast_dropouts
from setfit_core.engine.cpu.gelu import gelu, native_gelu
from setfit_core.engine.encoding import TokenCache
from setfit_core.training.embedding_phase import train_body

FP32 = EngineOptions(bf16_matmul="never")  # lean is for fp32 products (an AMX CPU would multiply in bf16)


def _trained_state(tiny_model_dir, tiny_data, lean: bool) -> tuple[dict[str, torch.Tensor], int]:
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(max_steps=4, seed=3, batch_size=8, show_progress_bar=False, save_strategy="no")
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args,
                        engine=FP32.replace(lean_activations=lean))
    assert result.engine.lean_activations == lean
    return {k: v.detach().clone() for k, v in body.state_dict().items()}, result.engine.rebuilt_activations


def test_training_is_bit_identical_with_rebuilt_activations(tiny_model_dir, tiny_data):
    lean, rebuilt = _trained_state(tiny_model_dir, tiny_data, True)
    assert rebuilt >= 4 * 2 * 3  # 4 steps x 2 layers x (GELU, LayerNorm, attention weights) at least
    kept, none = _trained_state(tiny_model_dir, tiny_data, False)
    assert none == 0
    assert lean.keys() == kept.keys()
    for name, value in kept.items():
        assert torch.equal(lean[name], value), name


def _saved_bytes(body, features, lean: bool) -> tuple[int, dict[str, torch.Tensor]]:
    """Bytes of the distinct non-parameter storages autograd keeps for one forward pass, and the gradients."""
    params = {p.untyped_storage()._cdata for p in body.parameters()}
    kept: dict[int, int] = {}
    real_pack = recompute.pack if lean else (lambda t: t)

    def record(tensor):
        packed = real_pack(tensor)
        if torch.is_tensor(packed) and packed.untyped_storage()._cdata not in params:
            kept[packed.untyped_storage()._cdata] = packed.untyped_storage().nbytes()
        return packed

    body.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    # kept_lean() collects the offers; the innermost saved-tensor hooks (these) pack through recompute.pack.
    with (recompute.layer_norm_offers(body, lean), recompute.kept_lean(lean),
          torch.autograd.graph.saved_tensors_hooks(record, recompute.unpack if lean else lambda t: t)):
        body(features)["sentence_embedding"].square().sum().backward()
    return sum(kept.values()), {n: p.grad.clone() for n, p in body.named_parameters() if p.grad is not None}


def test_a_bert_body_keeps_a_quarter_less_for_the_same_gradients(tiny_model_dir, tiny_data):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    body.train()
    features = TokenCache(body, tiny_data["text"], None).features_for(np.arange(len(tiny_data["text"])))
    with fast_dropouts(body), own_attention(body), native_gelu(body):
        full, full_grads = _saved_bytes(body, features, False)
        lean, lean_grads = _saved_bytes(body, features, True)
    assert lean < 0.75 * full, (lean, full)
    assert full_grads.keys() == lean_grads.keys()
    for name, grad in full_grads.items():
        assert torch.equal(lean_grads[name], grad), name


def test_tiled_linear_inputs_are_rebuilt_too():
    torch.manual_seed(0)
    norm, first, second = nn.LayerNorm(24), cm.TiledLinear(nn.Linear(24, 40)), cm.TiledLinear(nn.Linear(40, 24))
    model = nn.Sequential(norm, first)

    def run(lean: bool, rows: int):
        x = torch.randn(rows, 24, generator=torch.Generator().manual_seed(rows), requires_grad=True)
        for p in [*model.parameters(), *second.parameters()]:
            p.grad = None
        with recompute.layer_norm_offers(model, lean), recompute.kept_lean(lean) as offers:
            second(gelu(model(x))).square().sum().backward()
        return [x.grad, *(p.grad for p in [*model.parameters(), *second.parameters()])], offers

    for rows in (5, 64, 300):  # padded (the copy is kept), one product, a whole tile and one overlapping it
        lean, offers = run(True, rows)
        assert offers.rebuilds >= (0 if rows % 64 else 2), rows  # both products' inputs: LayerNorm's, GELU's
        kept, _ = run(False, rows)
        assert all(torch.equal(a, b) for a, b in zip(lean, kept, strict=True)), rows


def test_a_freed_or_overwritten_offer_is_never_used():
    with recompute.kept_lean():
        a = torch.ones(1024)
        recompute.offer(a, lambda: torch.zeros(1024))
        del a
        b = torch.full((1024,), 2.0)  # may reuse a's memory; it is another storage all the same
        assert _kept_as_is(b)
        c = torch.ones(16)
        recompute.offer(c, lambda: torch.ones(16))
        c.add_(1.0)  # written in place since the offer: its recipe no longer gives its values
        assert _kept_as_is(c)
        d = torch.ones(16)
        recompute.offer(d, lambda: torch.ones(16))
        assert isinstance(recompute.pack(d), recompute._Rebuild)
    assert recompute.pack(d) is d  # outside kept_lean nothing is rebuilt
    with torch.no_grad(), recompute.kept_lean():
        e = torch.ones(8)
        recompute.offer(e, lambda: torch.ones(8))  # no grad mode: nothing will be saved, nothing offered
        assert _kept_as_is(e)


def _kept_as_is(tensor: torch.Tensor) -> bool:
    packed = recompute.pack(tensor)
    return torch.is_tensor(packed) and packed.data_ptr() == tensor.data_ptr() and packed.grad_fn is None


def test_nothing_outlives_a_step(tiny_model_dir, tiny_data):
    """BERT's pooler output, which no loss uses, saves its own output (tanh): packed with its autograd
    history, it held itself, and the pooler's saved input, in a cycle that was never freed."""
    import gc

    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    assert body[0].auto_model.pooler is not None
    args = TrainingArguments(max_steps=3, seed=3, batch_size=8, show_progress_bar=False, save_strategy="no")
    train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=FP32)
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) in (recompute._Offer, recompute._Rebuild)]


def test_nothing_is_rebuilt_under_autocast(tiny_model_dir, tiny_data):
    """Under use_amp the recipes would run outside autocast, in other dtypes (a bf16 V times fp32 weights)."""
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(max_steps=2, seed=3, batch_size=8, show_progress_bar=False, use_amp=True)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=FP32)
    assert result.steps == 2 and np.isfinite(result.train_loss)
    assert result.engine.lean_activations and result.engine.rebuilt_activations == 0


def test_layer_norm_hooks_are_removed_after_an_error(tiny_model_dir):
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    norms = [m for m in body.modules() if type(m) is nn.LayerNorm]
    with pytest.raises(RuntimeError, match="stop"), recompute.layer_norm_offers(body) as hooked:
        assert hooked == len(norms) > 0 and all(m._forward_hooks for m in norms)
        raise RuntimeError("stop")
    assert not any(m._forward_hooks for m in norms)


def _lean(tiny_model_dir, tiny_data, engine: EngineOptions, **args) -> bool:
    body = SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body
    args = TrainingArguments(max_steps=2, seed=3, batch_size=8, show_progress_bar=False, **args)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args, engine=engine)
    return result.engine.lean_activations and result.engine.rebuilt_activations > 0


@pytest.mark.skipif(not cm.bf16_supported(), reason="this torch has no oneDNN fp32_precision setting")
def test_not_with_bf16_products(tiny_model_dir, tiny_data):
    """With bf16 products the rebuilds cost ~20% of a step on an AMX Xeon: fp32 products only."""
    assert not _lean(tiny_model_dir, tiny_data, EngineOptions(bf16_matmul="always"))  # bf16 (slowly) without AMX too
    assert _lean(tiny_model_dir, tiny_data, FP32)


def test_checkpointed_training_makes_no_offers(tiny_model_dir, tiny_data):
    assert not _lean(tiny_model_dir, tiny_data, FP32, gradient_checkpointing=True)

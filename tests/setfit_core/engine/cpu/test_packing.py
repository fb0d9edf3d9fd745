"""Packed tokens for CPU phase 1 (setfit_core/engine/cpu/packing.py): the same embeddings and gradients as padded
batches, texts never mixed, and nothing changed outside a packed forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel, TrainingArguments
from setfit_core.engine.cpu import packing
from setfit_core.engine.cpu.attention import own_attention, uses_own_attention
from setfit_core.engine.encoding import TokenCache, encode_rows
from setfit_core.training.embedding_phase import train_body


@pytest.fixture
def body(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu").model_body


def _texts() -> list[str]:
    # 3 to 42 tokens with [CLS] and [SEP]: several length buckets at a small split cost.
    return [" ".join(["good"] * n) for n in (1, 40, 3, 7, 2, 25, 12, 1, 30)] + ["very bad actor", "so sad"]


def test_packing_layout():
    p = packing.Packing.build(np.array([3, 1, 2]), [2, 1], torch.device("cpu"))
    assert (p.batch, p.length, p.tokens) == (3, 3, 6)
    assert p.index.tolist() == [0, 1, 2, 3, 6, 7]  # text * 3 + position of each real token
    first, second = p.groups
    assert (first.start, first.stop, first.texts, first.length) == (0, 4, 2, 3)
    assert first.gather.tolist() == [0, 1, 2, 3, 0, 0] and first.keep.tolist() == [0, 1, 2, 3]
    assert (second.start, second.stop, second.texts, second.length) == (4, 6, 1, 2)
    assert second.gather.tolist() == [0, 1] and second.keep.tolist() == [0, 1]
    hidden = torch.randn(3, 3, 5)
    packed = p.pack(hidden)
    assert packed.shape == (1, 6, 5)
    real = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    unpacked = p.unpack(packed)
    assert torch.equal(unpacked[real], hidden[real]) and not unpacked[~real].any()
    with pytest.raises(ValueError, match="3 texts of up to 3 tokens"):
        p.pack(torch.randn(3, 4, 5))  # features of another width than the packing was built for


@pytest.mark.parametrize(("lengths", "groups", "message"), [
    ([3, 1], [1], "do not cover"), ([3, 1], [3, -1], "do not cover"), ([], [], "do not cover"),
    ([2, 0], [2], "at least one token"),
])
def test_bad_packings_are_refused(lengths, groups, message):
    with pytest.raises(ValueError, match=message):
        packing.Packing.build(np.array(lengths), groups, torch.device("cpu"))


def test_packed_attention_is_each_texts_own_attention():
    torch.manual_seed(0)
    lengths, heads, dim = [5, 2, 4, 1], 3, 8
    p = packing.Packing.build(np.array(lengths), [2, 2], torch.device("cpu"))
    q, k, v = (torch.randn(1, heads, p.tokens, dim) for _ in range(3))
    out = p.attention(q, k, v, 0.5, lambda w: w)
    assert out.shape == (1, p.tokens, heads, dim)
    start = 0
    for n in lengths:  # one text alone, no padding at all
        text = slice(start, start + n)
        weights = torch.softmax(q[0, :, text] @ k[0, :, text].transpose(1, 2) * 0.5, dim=-1)
        torch.testing.assert_close(out[0, text], (weights @ v[0, :, text]).transpose(0, 1))
        start += n


def _embeddings_and_grads(body, texts: list[str], packed: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    cache = TokenCache(body, texts, None)
    body.zero_grad(set_to_none=True)
    out = encode_rows(body, cache, np.arange(len(texts)), 4, None, None, packed)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in body.named_parameters() if p.grad is not None}


def test_a_packed_forward_gives_the_padded_ones_embeddings_and_gradients(body):
    body.eval()  # no dropout: the same function either way (gradients still flow)
    texts = _texts()
    with own_attention(body), packing.packed_layers(body, uses_own_attention) as packable:
        assert packable
        shapes: list[tuple[int, ...]] = []
        layer = body[0].auto_model.encoder.layer[0]
        handle = layer.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
        padded, padded_grads = _embeddings_and_grads(body, texts, packed=False)
        buckets = len(shapes)
        shapes.clear()
        packed, packed_grads = _embeddings_and_grads(body, texts, packed=True)
        handle.remove()
    real_tokens = int(TokenCache(body, texts, None).lengths.sum())
    assert buckets > 1 and shapes == [(1, real_tokens, 32)]  # one pass over the real tokens only
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)
    assert packed_grads.keys() == padded_grads.keys()
    for name, grad in padded_grads.items():
        # A key bias has no effect on softmax, so its gradient is rounding noise either way.
        if not name.endswith("key.bias"):
            torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item())


def test_texts_never_mix(body):
    body.eval()
    texts = _texts()
    changed = [*texts[:-1], "good good good good good good good good"]
    with own_attention(body), packing.packed_layers(body, uses_own_attention), torch.no_grad():
        before = encode_rows(body, TokenCache(body, texts, None), np.arange(len(texts)), 4, packed=True)
        after = encode_rows(body, TokenCache(body, changed, None), np.arange(len(changed)), 4, packed=True)
    torch.testing.assert_close(after[:-1], before[:-1], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(after[-1], before[-1])


def test_outside_a_packed_pass_nothing_changes(body):
    body.eval()
    texts = _texts()
    features = TokenCache(body, texts, None).features_for(np.arange(len(texts)))
    with torch.no_grad():
        plain = body(dict(features))["sentence_embedding"]
        with own_attention(body), packing.packed_layers(body, uses_own_attention):
            inside = body(dict(features))["sentence_embedding"]
    torch.testing.assert_close(inside, plain, rtol=1e-5, atol=1e-6)
    encoder = body[0].auto_model.encoder
    assert not encoder._forward_pre_hooks and not encoder._forward_hooks  # removed on the way out


def test_without_our_attention_there_is_nothing_to_pack(body):
    with packing.packed_layers(body, uses_own_attention) as packable:  # transformers' own attention
        assert not packable


@pytest.mark.parametrize("checkpointed", [False, True])
def test_cpu_phase1_packs_its_steps_unless_checkpointed(body, tiny_data, checkpointed):
    seen: list[tuple[int, ...]] = []
    layer = body[0].auto_model.encoder.layer[0]
    layer.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)) if args else None)
    args = TrainingArguments(num_iterations=1, seed=0, show_progress_bar=False, save_strategy="no",
                             gradient_checkpointing=checkpointed)
    result = train_body(body, tiny_data["text"], np.asarray(tiny_data["label"]), args)
    assert result.steps > 1 and seen and result.engine.packed_tokens != checkpointed
    assert all(shape[0] == 1 for shape in seen) != checkpointed, seen

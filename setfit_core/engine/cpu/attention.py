"""Phase 1's own attention on CPU: eager attention with the fast dropout, exact fp32 products, packing.

transformers' BERT-style models (>= 4.53) dispatch attention through its attention interface. During
phase 1 on CPU the engine points them at `eager_attention` below, which computes what transformers'
eager attention does (scores, mask, softmax, dropout, weighted sum), differing only in how:

- attention's dropout draws its mask like `FastDropout` (dropout.py);
- its per-head products stay exact fp32 under bf16 products (matmul.py), as their shapes follow every
  text length and would each compile a bf16 kernel;
- inside `packing.packed(...)` it attends per group of texts on packed tokens (packing.py);
- outputs that are cheap to rebuild are offered for recomputation (recompute.py).

`register_attention()` registers it with transformers under `ATTENTION_NAME`; `own_attention(body)`
registers it (once per process) and switches the body's models to it, and back on the way out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from setfit_core.engine.cpu import packing, recompute
from setfit_core.engine.cpu.dropout import fast_dropout
from setfit_core.engine.cpu.matmul import exact_matmul

# Name under which `eager_attention` is registered with transformers.
ATTENTION_NAME = "setfit_core_cpu_attention"


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """transformers' eager attention (scores, mask, softmax, dropout, weighted sum) with `FastDropout`'s mask."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    packed = packing.current()
    if packed is not None and query.shape[0] == 1 and query.shape[2] == packed.tokens:
        # Packed tokens (packing.py): attention per group of texts, each attending to its own tokens.
        dropped = lambda w: fast_dropout(w, dropout, module.training, offer_output=True)  # noqa: E731
        return packed.attention(query, key, value, scaling, dropped), None
    weights = exact_matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # True: attend
        weights = weights.masked_fill(~attention_mask, torch.finfo(weights.dtype).min)
    elif attention_mask is not None:  # additive, as eager_mask makes it
        weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1)
    # softmax keeps its output for backward, so the dropped-out copy need not be kept as well.
    weights = fast_dropout(weights, dropout, module.training, offer_output=True)
    mixed = exact_matmul(weights, value).transpose(1, 2).contiguous()
    # The output projection keeps `mixed`; rebuilding it is one small product of tensors kept anyway.
    kept_weights = recompute.pack(weights)
    recompute.offer(mixed, lambda: exact_matmul(recompute.unpack(kept_weights), value).transpose(1, 2).contiguous())
    return mixed, weights


@functools.cache
def register_attention() -> bool:
    """Register `eager_attention` with transformers under `ATTENTION_NAME` (once per process); False where
    this transformers has no attention interface (< 4.53), whose models then keep their own attention."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask
    except ImportError:
        return False
    AttentionInterface.register(ATTENTION_NAME, eager_attention)
    # Without a mask function of its own, a new attention name gets no padding mask at all.
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)
    return True


def _swappable(module: nn.Module) -> bool:
    return (getattr(module, "_supports_attention_backend", False) and hasattr(module, "set_attn_implementation")
            and getattr(module.config, "_attn_implementation", None) in ("eager", "sdpa"))


@contextmanager
def own_attention(body: nn.Module) -> Iterator[bool]:
    """Inside, the body's Hugging Face models that dispatch attention through transformers' interface use
    `eager_attention`; yields whether any does. The attention implementation is not saved with a model, so
    saving the body inside is unaffected; the original one is back in place on the way out."""
    models = [m for m in body.modules() if _swappable(m)] if register_attention() else []
    originals = [m.config._attn_implementation for m in models]
    for model in models:
        model.set_attn_implementation(ATTENTION_NAME)
    try:
        yield bool(models)
    finally:
        for model, original in zip(models, originals, strict=True):
            model.set_attn_implementation(original)


def uses_own_attention(model: nn.Module) -> bool:
    """Whether a Hugging Face model runs `eager_attention` (inside `own_attention`)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == ATTENTION_NAME

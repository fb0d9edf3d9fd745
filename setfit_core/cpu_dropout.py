"""Dropout with a cheaper random source for phase 1 on CPU.

PyTorch's CPU dropout draws every mask element with `bernoulli_`, about 1.7 ns per element on 2 Xeon
cores: 8-9% of a MiniLM training step (19 dropouts per forward pass). Here each element's keep-or-drop
comes from 16 random bits, four elements per 64-bit draw, which is ~7x cheaper: an element is dropped
when its bits fall below round(p * 65536), so p holds to 1/65536 (0.1 becomes 0.100006), and kept
elements are scaled by 1 / (1 - that p), so the output's expectation is the input, as with
`nn.Dropout`. In 40-step A/Bs the whole step got 6-9% faster (sst2 and emotion, 8 and 64 shots; over
whole runs the development machine's drift was as large: README "Speed"). The draws come from torch's
default generator, so `set_seed` still makes a run repeatable.

`cpu_dropout(body)` swaps the body's `nn.Dropout` modules for `FastDropout` and, where the Hugging Face
model dispatches attention through transformers' attention interface (BERT-style models in
transformers >= 4.53), points it at eager attention with the same dropout; the original modules and
attention implementation are back in place on the way out, also after an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from setfit_core import recompute
from setfit_core.cpu_matmul import exact_matmul
from setfit_core.packing import current as packing_now

# Name under which the attention function below is registered with transformers.
ATTENTION_NAME = "setfit_core_cpu_dropout"
_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool mask of `shape` keeping each element with probability 1 - p (to 1/65536), and the scale
    that keeps the expectation unchanged."""
    threshold = round(p * _LEVELS)
    n = math.prod(shape)
    # random_ over the full int64 range: 64 uniform bits, read as four 16-bit integers.
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    bits = bits.view(torch.int16)[:n].view(shape)
    return bits >= threshold - _LEVELS // 2, _LEVELS / (_LEVELS - threshold)


def _masked(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    return x.mul(keep).mul_(scale)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return _masked(x, keep, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return _masked(grad, keep, ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float, training: bool, offer_output: bool = False) -> torch.Tensor:
    """`F.dropout` for CPU tensors, with the mask drawn by `keep_mask`. With `offer_output`, the output is
    offered for recomputation from `x` and the mask (recompute.py): for an `x` that is kept anyway."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0.0 < p < 1.0:  # GPUs draw masks cheaply; p=1 or bad p: torch decides
        return nn.functional.dropout(x, p, training)
    keep, scale = keep_mask(x.shape, p)
    y = _Dropout.apply(x, keep, scale)
    if offer_output:
        recompute.offer(y, lambda: _masked(x, keep, scale))
    return y


class FastDropout(nn.Module):
    """Stands in for an `nn.Dropout` (same `p`) while phase 1 trains on CPU."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0, **kwargs):
    """transformers' eager attention (scores, mask, softmax, dropout, weighted sum) with `FastDropout`'s mask."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    packing = packing_now()
    if packing is not None and query.shape[0] == 1 and query.shape[2] == packing.tokens:
        # Packed tokens (packing.py): attention per group of texts, each attending to its own tokens.
        dropped = lambda w: fast_dropout(w, dropout, module.training, offer_output=True)  # noqa: E731
        return packing.attention(query, key, value, scaling, dropped), None
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


def _register_attention() -> bool:
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, eager_mask
    except ImportError:  # transformers < 4.53: attention keeps torch's dropout
        return False
    AttentionInterface.register(ATTENTION_NAME, eager_attention)
    # Without a mask function of its own, a new attention name gets no padding mask at all.
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)
    return True


_ATTENTION_REGISTERED = _register_attention()


class _Swapped:
    """The dropout modules and attention implementations swapped in a body, and how to undo that."""

    def __init__(self, body: nn.Module) -> None:
        self.dropouts = [(parent, name, child) for parent in body.modules()
                         for name, child in parent.named_children() if isinstance(child, nn.Dropout)]
        self.models = [m for m in body.modules() if _attention_swappable(m)]
        self.original_attention = [m.config._attn_implementation for m in self.models]

    def install(self) -> None:
        for parent, name, child in self.dropouts:
            setattr(parent, name, FastDropout(child.p).train(child.training))
        for model in self.models:
            model.set_attn_implementation(ATTENTION_NAME)

    def restore(self) -> None:
        for parent, name, child in self.dropouts:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        for model, original in zip(self.models, self.original_attention, strict=True):
            model.set_attn_implementation(original)


def _attention_swappable(module: nn.Module) -> bool:
    return (_ATTENTION_REGISTERED and getattr(module, "_supports_attention_backend", False)
            and hasattr(module, "set_attn_implementation")
            and getattr(module.config, "_attn_implementation", None) in ("eager", "sdpa"))


@contextmanager
def cpu_dropout(body: nn.Module) -> Iterator[bool]:
    """`body` with `FastDropout` and its attention (see the module docstring) inside the block. Saving the
    body inside is fine: neither dropout modules nor the attention implementation are saved. Yields whether
    attention was swapped too."""
    swapped = _Swapped(body)
    swapped.install()
    try:
        yield bool(swapped.models)
    finally:
        swapped.restore()

"""Packed tokens for phase 1 on CPU: the transformer layers work on real tokens only, not on padding.

A step's texts differ in length, and a padded batch spends the linear layers, LayerNorms, GELUs and
dropouts (nearly all of a CPU step) on padding as well: 20-27% of the rows of sst2 and emotion steps,
even split into length buckets (`encoding.length_buckets`), and every bucket is one more forward pass.
Everything in a transformer layer but attention works token by token, so here a step's texts go through
the body in one forward pass whose layers see a `[1, tokens, hidden]` tensor of the real tokens only;
attention alone is computed padded, per group of texts of similar length (the same buckets), and packed
back. Outside the layers (embeddings, pooling) the batch stays padded, as the model expects.

The result is the same computation on the real tokens: attention never mixes texts (each group's keys are
masked to its own text's tokens) and a padding position contributes nothing to any real one, so outputs
and gradients match the padded forward up to float rounding (the products have other shapes). Dropout
draws other masks, their shapes following the packed rows.

`packed_layers(body, attends_packed)` installs the packing on the body's Hugging Face encoders (BERT-style:
an `encoder` whose layers call the attention interface) whose model `attends_packed` (the engine passes
`attention.uses_own_attention`: only `attention.eager_attention` computes attention on packed tokens);
inside it `packed(lengths, groups)` makes the next forward passes packed. Other encoders, and forward
passes outside `packed`, are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from setfit_core.engine.cpu.matmul import exact_matmul


@dataclass(frozen=True)
class _Group:
    """Texts of similar length whose attention is computed together, padded to `length`."""

    start: int  # its tokens are packed rows [start, stop)
    stop: int
    texts: int
    length: int
    gather: torch.Tensor  # [texts * length]: packed row (from start) of each padded position; 0 for padding
    keep: torch.Tensor  # [stop - start]: the padded positions that are real tokens, in packed order
    key_mask: torch.Tensor  # [texts, 1, 1, length]: True where a key is a real token


@dataclass(frozen=True)
class Packing:
    """Where a padded batch's real tokens go in the packed rows, and its attention groups."""

    batch: int
    length: int
    tokens: int
    index: torch.Tensor  # [tokens]: flat padded position (text * length + position) of each packed row
    groups: tuple[_Group, ...]

    @classmethod
    def build(cls, lengths: np.ndarray, group_sizes: list[int], device: torch.device) -> Packing:
        """For texts of `lengths` (tokens each, in batch order) whose consecutive runs of `group_sizes`
        texts form the attention groups."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(lengths) == 0 or sum(group_sizes) != len(lengths) or min(group_sizes, default=0) < 1:
            raise ValueError(f"groups of {group_sizes} texts do not cover {len(lengths)} texts")
        if lengths.min() < 1:
            raise ValueError("every text needs at least one token")
        width = int(lengths.max())
        index = np.concatenate([text * width + np.arange(n) for text, n in enumerate(lengths)])
        groups, first, start = [], 0, 0
        for size in group_sizes:
            sizes = lengths[first:first + size]
            length = int(sizes.max())
            real = np.arange(length)[None, :] < sizes[:, None]  # [texts, length]
            gather = np.zeros(size * length, dtype=np.int64)
            gather[real.reshape(-1)] = np.arange(int(sizes.sum()))
            stop = start + int(sizes.sum())
            groups.append(_Group(start, stop, size, length, torch.from_numpy(gather).to(device),
                                 torch.from_numpy(np.flatnonzero(real.reshape(-1))).to(device),
                                 torch.from_numpy(real).to(device).view(size, 1, 1, length)))
            first, start = first + size, stop
        return cls(len(lengths), width, start, torch.from_numpy(index).to(device), tuple(groups))

    def pack(self, hidden: torch.Tensor) -> torch.Tensor:
        """[batch, length, hidden] padded -> [1, tokens, hidden] real tokens."""
        if tuple(hidden.shape[:2]) != (self.batch, self.length):
            raise ValueError(f"packing is for {self.batch} texts of up to {self.length} tokens; the encoder got "
                             f"{tuple(hidden.shape)}: pass the features `packed` was built for")
        return hidden.reshape(self.batch * self.length, -1).index_select(0, self.index).unsqueeze(0)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """[1, tokens, hidden] -> [batch, length, hidden], zeros at padding."""
        flat = packed.new_zeros(self.batch * self.length, packed.shape[-1])
        return flat.index_copy(0, self.index, packed[0]).view(self.batch, self.length, -1)

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float,
                  dropout: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Attention of packed `[1, heads, tokens, head_dim]` projections, per group, each text's tokens
        attending to its own tokens only; returns `[1, tokens, heads, head_dim]` (what attention
        implementations return, heads not yet merged)."""
        q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [tokens, heads, head_dim] views
        heads, head_dim = q.shape[1], q.shape[2]
        parts = []
        for group in self.groups:

            def padded(x: torch.Tensor, g: _Group = group) -> torch.Tensor:
                # Padding positions read row 0 of the group: masked as keys, dropped as queries, so any
                # finite values do (their probabilities are exactly 0; their outputs are never read).
                rows = x[g.start:g.stop].index_select(0, g.gather)
                return rows.view(g.texts, g.length, heads, head_dim).transpose(1, 2)

            weights = exact_matmul(padded(q), padded(k).transpose(2, 3)) * scaling
            weights = weights.masked_fill(~group.key_mask, torch.finfo(weights.dtype).min)
            weights = dropout(torch.softmax(weights, dim=-1))
            mixed = exact_matmul(weights, padded(v)).transpose(1, 2)  # [texts, length, heads, head_dim]
            parts.append(mixed.reshape(group.texts * group.length, heads, head_dim).index_select(0, group.keep))
        return (torch.cat(parts) if len(parts) > 1 else parts[0]).unsqueeze(0)


# The packing of the forward passes running now (inside `packed`), per thread and task: a Prefect flow
# may train two models at once in one process.
_current: ContextVar[Packing | None] = ContextVar("setfit_core_packing", default=None)


def current() -> Packing | None:
    return _current.get()


@contextmanager
def packed(lengths: np.ndarray, group_sizes: list[int], device: torch.device) -> Iterator[Packing]:
    """Forward passes inside, through a body inside `packed_layers`, are packed for texts of `lengths`."""
    packing = Packing.build(lengths, group_sizes, device)
    token = _current.set(packing)
    try:
        yield packing
    finally:
        _current.reset(token)


def _encoders(body: nn.Module, attends_packed: Callable[[nn.Module], bool]) -> list[nn.Module]:
    """The BERT-style encoders (a `layer` list under a model's `encoder`) of models that `attends_packed`,
    with absolute position embeddings (added before the encoder: relative ones are computed inside
    attention from the padded layout)."""

    def packable(model: nn.Module) -> bool:
        config = getattr(model, "config", None)
        return (attends_packed(model)
                and getattr(config, "position_embedding_type", "absolute") == "absolute"
                and not getattr(config, "is_decoder", False)
                and isinstance(getattr(getattr(model, "encoder", None), "layer", None), nn.ModuleList))

    return [model.encoder for model in body.modules() if packable(model)]


def _pack_input(module: nn.Module, args: tuple, kwargs: dict):
    packing = _current.get()
    if packing is None:
        return None
    if args:
        return (packing.pack(args[0]), *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": packing.pack(kwargs["hidden_states"])}


def _unpack_output(module: nn.Module, args: tuple, kwargs: dict, output):
    packing = _current.get()
    if packing is None:
        return None
    if isinstance(output, tuple) and not hasattr(output, "last_hidden_state"):
        return (packing.unpack(output[0]), *output[1:])
    output.last_hidden_state = packing.unpack(output.last_hidden_state)
    return output


@contextmanager
def packed_layers(body: nn.Module, attends_packed: Callable[[nn.Module], bool],
                  enabled: bool = True) -> Iterator[bool]:
    """Inside, forward passes of `body` within `packed(...)` run its encoder layers on packed tokens;
    yields whether `body` has an encoder that can (see `_encoders`). Hooks are removed on the way out."""
    encoders = _encoders(body, attends_packed) if enabled else []
    handles = []
    try:
        for encoder in encoders:
            handles.append(encoder.register_forward_pre_hook(_pack_input, with_kwargs=True))
            handles.append(encoder.register_forward_hook(_unpack_output, with_kwargs=True))
        yield bool(encoders)
    finally:
        for handle in handles:
            handle.remove()

"""Phase 1 on CPU keeps fewer activations: outputs that are cheap to recompute are not kept for backward.

Autograd keeps, for each operation, the tensors its backward needs. Several of those are outputs of a
cheap operation whose own inputs are kept anyway, so holding both is paying twice:

* a linear layer keeps its input, which after the intermediate GELU is GELU's output, while GELU keeps
  its own input (MiniLM: the two largest saved tensors of a layer, 2 x 1536 floats per token);
* a linear layer after a LayerNorm keeps the LayerNorm's output (Q, K and V all read the same one), while
  LayerNorm keeps its input;
* attention keeps the dropped-out weights for the product with V, while softmax keeps its output and
  dropout its mask; and the output projection keeps that product, one small batched product of them.

With bf16 products on an AMX Xeon the rebuilds cost 10-20% of a step (the products they sit between are
3-6x faster there), so the engine rebuilds only with fp32 products.

Such an output is *offered* (`offer(output, recipe)`) with a recipe that rebuilds it from tensors kept
anyway. While `kept_lean()` is active, autograd's saved-tensor hooks store a tensor of an offered
output's storage as the offer plus its view geometry; the backward pass rebuilds the output when it first
needs it (once for all the views of it), and the output itself is freed as soon as the forward pass is
done with it. The recipes re-run the same kernels on the same inputs, so rebuilt values and gradients are
bit-identical (tested). MiniLM on 32 sst5 texts keeps 167 MB instead of 287 MB, for a few element-wise
operations and one small product per layer more in the backward pass (~3% of a step in fp32; docs/performance.md).

An offer is matched by its storage (a weak reference, so a freed storage never matches a new one) and
refused if the storage was written in place since. Offers made outside `kept_lean()`, without grad mode,
or under autocast (the recipe would run outside it, in other dtypes) do nothing. Once packed, an offer is
held only by the packed tensors, so its recipe's inputs are freed when the backward that needed them has
run; offers never packed are dropped when `kept_lean()` exits, after the step's backward.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef


@dataclass
class _Offer:
    storage: StorageWeakRef
    version: int
    dtype: torch.dtype
    recipe: Callable[[], torch.Tensor]
    packs: int = 0  # saved tensors packed from this storage and not yet unpacked
    rebuilt: torch.Tensor | None = None  # shared by those unpacks (Q, K and V, or row tiles, read one storage)


@dataclass
class _Rebuild:
    """What a saved tensor was packed into: the offer of its storage and its view of that storage."""

    offer: _Offer
    size: torch.Size
    stride: tuple[int, ...]
    offset: int


@dataclass
class Offers:
    """The offers of the step running inside `kept_lean()`, by storage pointer: offers not packed yet, held
    here, and packed ones, held only by the packed tensors in the autograd graph; `rebuilds` counts the
    saved tensors stored as a recipe instead of as themselves."""

    pending: dict[int, _Offer] = field(default_factory=dict)
    packed: weakref.WeakValueDictionary[int, _Offer] = field(default_factory=weakref.WeakValueDictionary)
    rebuilds: int = 0


# The offers of the forward pass running now (inside `kept_lean`), per thread and task: a Prefect flow may
# train two models at once in one process.
_current: ContextVar[Offers | None] = ContextVar("setfit_core_recompute_offers", default=None)


def offer(output: torch.Tensor, recipe: Callable[[], torch.Tensor]) -> None:
    """Let autograd keep `recipe` (which must return `output`'s exact values, contiguous) instead of
    `output` where a backward needs it. Only contiguous outputs that own their whole storage qualify."""
    offers = _current.get()
    if offers is None or not torch.is_grad_enabled() or not output.is_contiguous() or output.storage_offset():
        return
    if torch.is_autocast_enabled(output.device.type):  # the recipe would run outside autocast, in other dtypes
        return
    storage = output.untyped_storage()
    if storage.nbytes() != output.numel() * output.element_size():
        return
    offers.pending[storage._cdata] = _Offer(StorageWeakRef(storage), output._version, output.dtype, recipe)


def pack(tensor: torch.Tensor) -> torch.Tensor | _Rebuild:
    """`tensor`, or how to rebuild it if its storage was offered (the saved-tensor pack hook)."""
    offers = _current.get()
    if offers is None or tensor.device.type != "cpu":
        return tensor
    key = tensor.untyped_storage()._cdata
    found = offers.pending.get(key) or offers.packed.get(key)
    if found is None or found.storage.expired() or found.version != tensor._version or found.dtype != tensor.dtype:
        # Kept as is, but without its autograd history, as autograd keeps a tensor without hooks: an
        # operation that saves its own output would otherwise hold itself in a cycle, and where its backward
        # never runs (BERT's unused pooler) the cycle, and all it holds, would never be freed.
        return tensor.detach()
    # From now on only the packed tensors hold the offer (and through its recipe, the recipe's inputs):
    # each is freed once its backward has run, as a kept tensor would be.
    offers.packed[key] = offers.pending.pop(key, found)
    offers.rebuilds += 1
    found.packs += 1
    return _Rebuild(found, tensor.size(), tensor.stride(), tensor.storage_offset())


def unpack(packed: torch.Tensor | _Rebuild) -> torch.Tensor:
    """The saved tensor back (the saved-tensor unpack hook): as kept, or rebuilt by its recipe, once for
    all the tensors packed from the same storage."""
    if not isinstance(packed, _Rebuild):
        return packed
    found = packed.offer
    if found.rebuilt is None:
        with torch.no_grad():
            found.rebuilt = found.recipe()
    view = found.rebuilt.as_strided(packed.size, packed.stride, packed.offset)
    found.packs -= 1
    if found.packs <= 0:
        found.rebuilt = None
    return view


@contextmanager
def kept_lean(enabled: bool = True) -> Iterator[Offers | None]:
    """Inside (a training step's forward and backward), offered outputs are rebuilt instead of kept; yields
    the step's `Offers` (None when not `enabled`, or inside another `kept_lean`, whose offers these join)."""
    if not enabled or _current.get() is not None:
        yield None
        return
    offers = Offers()
    token = _current.set(offers)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield offers
    finally:
        _current.reset(token)


def _offer_layer_norm(module: nn.LayerNorm, inputs: tuple, output: torch.Tensor) -> None:
    x = inputs[0]
    offer(output, lambda: nn.functional.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps))


@contextmanager
def layer_norm_offers(body: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Inside, each `nn.LayerNorm` of `body` offers its output (LayerNorm keeps its input for backward
    anyway); yields how many do. The hooks are removed on the way out, also after an error."""
    handles = [m.register_forward_hook(_offer_layer_norm) for m in body.modules()
               if type(m) is nn.LayerNorm] if enabled else []
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()

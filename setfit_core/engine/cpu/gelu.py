"""GELU through PyTorch's own CPU kernel for phase 1, not oneDNN's.

On CPU, `F.gelu` of an fp32 tensor runs a oneDNN kernel that is compiled for the tensor's shape and
kept in oneDNN's primitive cache for good, forward and backward alike. A training step's shapes follow
its texts' lengths, so a run keeps compiling kernels, and each one's small allocations are made in the
middle of the step's activations: ~1,500 long-lived chunks per step pinned the freed activation memory
in glibc's heap, which then could not be reused for other sizes (5 classes x 64 shots on MiniLM: heap's
free part 164 -> 389 MiB over 30 steps). PyTorch's vectorised kernel (what `F.gelu` runs when oneDNN is
switched off) needs no per-shape state and was no slower: the same run took 9.2 s instead of 10.1 s.

`native_gelu(body)` swaps the body's exact (erf) GELU modules for `NativeGELU` and back on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from setfit_core.engine.cpu.recompute import offer

try:
    from transformers.activations import GELUActivation
except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
    GELUActivation = ()


@contextmanager
def _without_onednn() -> Iterator[None]:
    # torch.backends.mkldnn.flags() would also reset the matmul precision (matmul.py): flip only this.
    previous = torch._C._get_mkldnn_enabled()
    torch._C._set_mkldnn_enabled(False)
    try:
        yield
    finally:
        torch._C._set_mkldnn_enabled(previous)


class _NativeGelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        with _without_onednn():
            return torch.ops.aten.gelu_backward(grad, x)


def _forward(x: torch.Tensor) -> torch.Tensor:
    with _without_onednn():
        return nn.functional.gelu(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU; on CPU without oneDNN's per-shape kernels (see the module docstring). The output is
    offered for recomputation (recompute.py): GELU keeps its input for backward anyway."""
    if x.device.type != "cpu":
        return nn.functional.gelu(x)
    y = _NativeGelu.apply(x)
    offer(y, lambda: _forward(x))
    return y


class NativeGELU(nn.Module):
    """Stands in for an exact GELU module (transformers' `GELUActivation`, `nn.GELU()`) while phase 1 trains."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu(x)


def _exact_gelu(module: nn.Module) -> bool:
    if type(module) is nn.GELU:
        return module.approximate == "none"
    # GELUActivation's Python variant computes the same function with erf; both become the native kernel.
    return bool(GELUActivation) and type(module) is GELUActivation


@contextmanager
def native_gelu(body: nn.Module) -> Iterator[int]:
    """`body` with `NativeGELU` in place of its exact GELU modules inside the block; yields how many were
    swapped. GELU modules have no parameters or buffers, so saving the body inside is unaffected."""
    swapped = [(parent, name, child) for parent in body.modules()
               for name, child in parent.named_children() if _exact_gelu(child)]
    for parent, name, _ in swapped:
        setattr(parent, name, NativeGELU())
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)

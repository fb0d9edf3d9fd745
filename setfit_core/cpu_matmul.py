"""bf16 matrix products for phase 1 on CPUs with AMX.

On a CPU with AMX tiles (Intel Xeon since Sapphire Rapids), oneDNN multiplies bf16 matrices 3-6x
faster than fp32 ones (2 cores, MiniLM's shapes), and matrix products are half of a CPU training step.
`torch.backends.mkldnn.matmul.fp32_precision = "bf16"` makes the products of fp32 tensors round their
inputs to bf16 and accumulate in fp32: the CPU's counterpart of TF32 on a GPU. Parameters, activations,
gradients and AdamW's state stay fp32, so unlike autocast nothing is cast or copied per operation.

oneDNN compiles a kernel for every new bf16 shape, about a millisecond each, and keeps 2-7 MB per shape
for good (measured: 100 row counts of one linear layer grew RSS by 730 MB). A training step's shapes
change with its texts' lengths, so inside `bf16_matmuls` the body's linear layers pad their flattened
rows to a multiple of `ROW_MULTIPLE` and multiply at most `TILE_ROWS` rows at a time: four row counts
in all, whose kernels `bf16_matmuls` compiles before training starts. Compiled during training, each
kernel's allocations would land between a step's activations and pin that memory in glibc's heap for
good (see cpu_gelu.py). Attention's per-head products, whose shapes follow every length, stay exact
fp32 (`exact_matmul`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from setfit_core import recompute

ROW_MULTIPLE = 64
# Larger products are done in tiles of this many rows (a multiple of ROW_MULTIPLE); on MiniLM the tiles
# cost no measurable time per training step (README "Memory", cpu_step_ab.py).
TILE_ROWS = 256


def amx_available() -> bool:
    """Whether this CPU has AMX tiles and this torch can run fp32 matrix products in bf16 on them."""
    backend = getattr(torch.backends.mkldnn, "matmul", None)
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return (torch.backends.mkldnn.is_available() and hasattr(backend, "fp32_precision")
            and has_amx is not None and bool(has_amx()))


def _in_bf16() -> bool:
    return getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", None) == "bf16"


@contextmanager
def _precision(value: str) -> Iterator[None]:
    backend = torch.backends.mkldnn.matmul
    previous = backend.fp32_precision
    backend.fp32_precision = value
    try:
        yield
    finally:
        backend.fp32_precision = previous


class _ExactMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        with _precision("ieee"):
            return torch.matmul(a, b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        with _precision("ieee"):
            return torch.matmul(grad, b.transpose(-1, -2)), torch.matmul(a.transpose(-1, -2), grad)


def exact_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`torch.matmul` of same-rank tensors, in fp32 (forward and backward) even inside `bf16_matmuls`."""
    return _ExactMatmul.apply(a, b) if _in_bf16() else torch.matmul(a, b)


class RowPaddedLinear(nn.Module):
    """Stands in for an `nn.Linear` (the same parameters) inside `bf16_matmuls`: pads the flattened input
    rows with zeros to a multiple of `ROW_MULTIPLE` and multiplies `TILE_ROWS` rows at a time, so oneDNN
    sees few shapes (`row_counts()`); the output is the same."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        rows = flat.shape[0]
        padded = -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE
        if padded != rows:
            unpadded = recompute.pack(flat)  # kept by the recipe: the input itself, or how to rebuild it
            flat = nn.functional.pad(flat, (0, 0, 0, padded - rows))
            # The product would keep the padded copy; the recipe keeps the unpadded input instead.
            recompute.offer(flat, lambda: nn.functional.pad(recompute.unpack(unpadded), (0, 0, 0, padded - rows)))
        if padded <= TILE_ROWS:
            out = nn.functional.linear(flat, self.weight, self.bias)
        else:
            out = torch.cat([nn.functional.linear(tile, self.weight, self.bias) for tile in flat.split(TILE_ROWS)])
        return out[:rows].view(*x.shape[:-1], self.out_features)


def row_counts() -> range:
    """Every row count a `RowPaddedLinear` hands to oneDNN."""
    return range(ROW_MULTIPLE, TILE_ROWS + 1, ROW_MULTIPLE)


def compile_kernels(linears: list[nn.Linear]) -> None:
    """Run each layer shape's forward and backward products once per `row_counts()` on zeros (no gradient
    reaches a parameter), so oneDNN compiles and caches those kernels now, before training allocates."""
    shapes = {(layer.in_features, layer.out_features, layer.bias is not None): layer for layer in linears}
    for layer in shapes.values():
        inputs = [p for p in (layer.weight, layer.bias) if p is not None and p.requires_grad]
        for rows in row_counts():
            x = torch.zeros(rows, layer.in_features, device=layer.weight.device, requires_grad=True)
            y = nn.functional.linear(x, layer.weight, layer.bias)
            torch.autograd.grad(y, [x, *inputs], torch.ones_like(y))


@contextmanager
def bf16_matmuls(body: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Inside, the CPU's fp32 matrix products take bf16 inputs where `amx_available()`, and `body`'s linear
    layers are `RowPaddedLinear`s; yields whether that is so. The precision setting is process-wide; it and
    the layers are back in place on the way out, also after an error. The parameters are the same objects
    under the same names, so an optimizer built inside and a body saved inside see no difference."""
    if not (enabled and amx_available()):
        yield False
        return
    linears = [(parent, name, child) for parent in body.modules()
               for name, child in parent.named_children() if type(child) is nn.Linear]
    for parent, name, child in linears:
        setattr(parent, name, RowPaddedLinear(child))
    try:
        with _precision("bf16"):
            compile_kernels([child for _, _, child in linears])
            yield True
    finally:
        for parent, name, child in linears:
            setattr(parent, name, child)

"""bf16 matrix products for phase 1 on CPUs with AMX.

On a CPU with AMX tiles (Intel Xeon since Sapphire Rapids), oneDNN multiplies bf16 matrices 3-6x
faster than fp32 ones (2 cores, MiniLM's shapes), and matrix products are half of a CPU training step.
`torch.backends.mkldnn.matmul.fp32_precision = "bf16"` makes the products of fp32 tensors round their
inputs to bf16 and accumulate in fp32: the CPU's counterpart of TF32 on a GPU. Parameters, activations,
gradients and AdamW's state stay fp32, so unlike autocast nothing is cast or copied per operation.

oneDNN compiles a kernel for every new bf16 shape, about a millisecond each, and keeps 2-7 MB per shape
for good (measured: 100 row counts of one linear layer grew RSS by 730 MB). A training step's shapes
change with its texts' lengths, so inside `bf16_matmuls` the body's linear layers multiply their flattened
rows in tiles of a multiple of `ROW_MULTIPLE`, at most `TILE_ROWS`, rows: four row counts in all, whose
kernels `bf16_matmuls` compiles before training starts. Above TILE_ROWS rows a last tile overlaps the one
before rather than padding a copy, so backward keeps each layer's input itself, shared by Q, K and V.
Compiled during training, each kernel's allocations would land between a step's activations and pin that
memory in glibc's heap for good (see gelu.py). Attention's per-head products, whose shapes follow
every length, stay exact fp32 (`exact_matmul`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

ROW_MULTIPLE = 64
# Larger products are done in tiles of this many rows (a multiple of ROW_MULTIPLE); on MiniLM the tiles
# cost no measurable time per training step (docs/performance.md, benchmarks/cpu_step_ab.py).
TILE_ROWS = 256


def bf16_supported() -> bool:
    """Whether this torch can run the CPU's fp32 matrix products with bf16 inputs (oneDNN's fp32_precision)."""
    backend = getattr(torch.backends.mkldnn, "matmul", None)
    return torch.backends.mkldnn.is_available() and hasattr(backend, "fp32_precision")


def amx_available() -> bool:
    """Whether this CPU has AMX tiles and this torch can run fp32 matrix products in bf16 on them."""
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bf16_supported() and has_amx is not None and bool(has_amx())


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


def _tiles(rows: int) -> list[tuple[int, int, int]]:
    """How `_TiledLinear` covers `rows` (more than TILE_ROWS) input rows: `(start, stop, keep)` multiplies
    rows `[start, stop)`, a count in `row_counts()`, and keeps the products of rows `[keep, stop)`. Whole
    tiles of TILE_ROWS rows, then the rest, if any, in one tile of the next multiple of ROW_MULTIPLE rows
    that ends at the last row, overlapping the tile before."""
    tiles = [(start, start + TILE_ROWS, start) for start in range(0, rows - TILE_ROWS + 1, TILE_ROWS)]
    done = len(tiles) * TILE_ROWS
    if done < rows:
        size = -(-(rows - done) // ROW_MULTIPLE) * ROW_MULTIPLE
        tiles.append((rows - size, rows, done))
    return tiles


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
    if bias is None:
        torch.mm(x, weight.t(), out=out)
    else:
        torch.addmm(bias, x, weight.t(), out=out)


class _TiledLinear(torch.autograd.Function):
    """`nn.functional.linear` of a 2-D input of more than TILE_ROWS rows, multiplied in `_tiles()`: oneDNN
    sees only `row_counts()` rows, and backward keeps the input itself (no padded copy), so layers reading
    one input (Q, K and V) share it and `recompute` can rebuild it. Products are written straight into their
    rows of the result."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = x.new_empty(x.shape[0], weight.shape[0])
        for start, stop, keep in _tiles(x.shape[0]):
            if keep == start:
                _product(x[start:stop], weight, bias, out[start:stop])
            else:
                last = x.new_empty(stop - start, weight.shape[0])
                _product(x[start:stop], weight, bias, last)
                out[keep:stop] = last[keep - start:]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grad_weight = None
        for start, stop, keep in _tiles(x.shape[0]):
            tile = grad[start:stop]
            if keep != start:  # the rows before `keep` are the tile before's: none of their gradient is this one's
                tile = tile.clone()
                tile[:keep - start] = 0
            if grad_x is not None and keep == start:
                torch.mm(tile, weight, out=grad_x[start:stop])
            elif grad_x is not None:
                grad_x[keep:stop] = torch.mm(tile, weight)[keep - start:]
            if not ctx.needs_input_grad[1]:
                continue
            if grad_weight is None:
                grad_weight = torch.mm(tile.t(), x[start:stop])
            else:
                grad_weight.addmm_(tile.t(), x[start:stop])
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def _tiled_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`nn.functional.linear` of 2-D `x` through products of `row_counts()` rows only."""
    rows = x.shape[0]
    if rows > TILE_ROWS:
        return _TiledLinear.apply(x, weight, bias)
    # One product of the rows padded to a multiple of ROW_MULTIPLE (backward keeps that copy of at most
    # TILE_ROWS rows): cheaper there than a tile overlapping another, or a custom autograd function.
    short = -rows % ROW_MULTIPLE
    return nn.functional.linear(nn.functional.pad(x, (0, 0, 0, short)) if short else x, weight, bias)[:rows]


class TiledLinear(nn.Module):
    """Stands in for an `nn.Linear` (the same parameters) inside `bf16_matmuls`: multiplies the flattened
    input rows in tiles of `row_counts()` rows (`_tiles`), so oneDNN sees few shapes; the output is the same."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _tiled_linear(x.reshape(-1, self.in_features), self.weight, self.bias)
        return out.view(*x.shape[:-1], self.out_features)


def row_counts() -> range:
    """Every row count a `TiledLinear` hands to oneDNN."""
    return range(ROW_MULTIPLE, TILE_ROWS + 1, ROW_MULTIPLE)


def compile_kernels(linears: list[nn.Linear]) -> None:
    """Run each layer shape's forward and backward products once per `row_counts()` on zeros (no gradient
    reaches a parameter), so oneDNN compiles and caches those kernels now, before training allocates."""
    shapes = {(layer.in_features, layer.out_features, layer.bias is not None): layer for layer in linears}
    for layer in shapes.values():
        inputs = [p for p in (layer.weight, layer.bias) if p is not None and p.requires_grad]
        # One product of each row count, then a whole tile and one of each (weight gradients summed over tiles).
        for rows in [*row_counts(), *(TILE_ROWS + rows for rows in row_counts())]:
            x = torch.zeros(rows, layer.in_features, device=layer.weight.device, requires_grad=True)
            y = _tiled_linear(x, layer.weight, layer.bias)
            torch.autograd.grad(y, [x, *inputs], torch.ones_like(y))


@contextmanager
def bf16_matmuls(body: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Inside, the CPU's fp32 matrix products take bf16 inputs where `bf16_supported()` (fast only where
    `amx_available()`: the engine decides), and `body`'s linear layers are `TiledLinear`s; yields whether
    that is so. The precision setting is process-wide; it and the layers are back in place on the way out,
    also after an error. The parameters are the same objects under the same names, so an optimizer built
    inside and a body saved inside see no difference."""
    if not (enabled and bf16_supported()):
        yield False
        return
    linears = [(parent, name, child) for parent in body.modules()
               for name, child in parent.named_children() if type(child) is nn.Linear]
    for parent, name, child in linears:
        setattr(parent, name, TiledLinear(child))
    try:
        with _precision("bf16"):
            compile_kernels([child for _, _, child in linears])
            yield True
    finally:
        for parent, name, child in linears:
            setattr(parent, name, child)

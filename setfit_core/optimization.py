"""Phase 1's optimizer and learning-rate schedule, as setfit 1.2.0 / transformers: AdamW (fused where
available), linear warm-up then linear decay."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def linear_schedule(base_lr: float, warmup: int, total: int) -> Callable[[int], float]:
    """Learning rate after `step` steps: linear warm-up over `warmup` steps, then linear decay to 0."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return base_lr * step / max(1, warmup)
        return base_lr * max(0.0, (total - step) / max(1, total - warmup))

    return lr_at


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)  # a capturable optimizer's recorded step reads it on the device
        else:
            group["lr"] = lr


def make_optimizer(params, lr: float, weight_decay: float,
                   graph_device: torch.device | None = None) -> torch.optim.Optimizer:
    """AdamW, fused where available; with `graph_device`, one whose step a CUDA graph can record.

    The fused kernel (CPU and CUDA, torch >= 2.4) does the AdamW update in one pass: on MiniLM with
    2 CPU cores it takes the step from ~120 ms to ~25 ms. A recorded step reads its learning rate
    from a device tensor, so the schedule can change it between replays.
    """
    params = list(params)
    if graph_device is not None:
        try:
            lr_tensor = torch.tensor(float(lr), device=graph_device)
            return torch.optim.AdamW(params, lr=lr_tensor, weight_decay=weight_decay, fused=True, capturable=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            logger.info("no capturable fused AdamW here (%s); training without CUDA graphs", exc)
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def allocate_state_now(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's per-parameter state (AdamW's moments) now rather than in the first step.

    Made in the first step, after the backward pass has freed that step's activations, the ~90 MB of
    moments land in the holes those left all over glibc's heap, and stay there: every later step's
    activations then fit only between them, and on CPU the heap grows with each new mix of sizes
    (heap.py). Made before any activation exists, they sit together below them. A step with zero
    gradients and a zero learning rate creates the state without changing a parameter; the step counts
    go back to 0, so the run's updates are exactly those of an optimizer that started lazily.
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params or any(p.grad is not None for p in params):
        return
    lrs = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * 0 if torch.is_tensor(group["lr"]) else 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    try:
        optimizer.step()
    finally:
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = state["step"].zero_() if torch.is_tensor(state["step"]) else 0

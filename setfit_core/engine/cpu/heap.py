"""Hand freed heap memory back to the OS during CPU training (glibc only).

PyTorch's CPU tensors come from malloc. Every step frees activations of a slightly different size
than the step before (texts of other lengths), and glibc keeps freed pages resident; where allocations
that outlive a step sit between them, the next steps cannot reuse that memory, so a long run's RSS crept
up although its live memory did not: 5 classes x 64 shots on MiniLM went from 1.08 GB after 1 step to
1.61 GB after 150 steps, and on. Phase 1 now avoids the allocations that did that (gelu.py,
matmul.py, `allocate_state_now`); this stays as the safety net for any others:
`HeapReleaser.after_step()` calls `malloc_trim` when the resident set has crept past its settled level.
On other C libraries (musl, macOS) it does nothing.

`page_out(tensor)` drops a tensor's clean file-backed pages from the resident set (Linux): the body's
weights are loaded as views of the model file's mapping, so every page a run reads stays resident.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable

import torch

# Trim once the resident set has crept this far past its settled level.
DEFAULT_SLACK_BYTES = 64 * 2**20


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Linux's madvise advice "reclaim these pages now" (5.4+). It never changes what memory holds: clean
# file-backed pages are dropped and read back from the file if touched again, and anonymous ones
# (copied on write, or with no file behind them) stay unless there is swap to move them to.
_MADV_PAGEOUT = 21
_MADVISE = getattr(_LIBC, "madvise", None) if sys.platform.startswith("linux") else None
if _MADVISE is not None:
    _MADVISE.argtypes, _MADVISE.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int


def resident_bytes() -> int | None:
    """This process's resident set size, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS now; False where that is not possible here."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def page_out(tensor: torch.Tensor) -> bool:
    """Ask the kernel to reclaim the pages under a CPU tensor's data now; False where it cannot (not
    Linux, a kernel before 5.4). Safe for any tensor (see _MADV_PAGEOUT); it pays off for one that is a
    view of a memory-mapped file, such as a loaded weight that is read once and then set aside."""
    if _MADVISE is None or tensor.device.type != "cpu" or tensor.numel() == 0 or not tensor.is_contiguous():
        return False
    start = tensor.data_ptr() // _PAGE * _PAGE
    end = tensor.data_ptr() + tensor.numel() * tensor.element_size()
    return _MADVISE(start, end - start, _MADV_PAGEOUT) == 0


class HeapReleaser:
    """Trims the heap whenever a training loop's resident set creeps `slack` bytes past its settled level.

    The level is the largest resident set over the first `settle_steps` steps (model, optimizer state
    and the working set of steps of several sizes). Trimming at every step costs ~20% of a CPU step (the
    freed pages are faulted back in by the next step); settling over 3 steps only still trimmed every
    third step of a 5x64 run (+7% time); over 20 steps, 28 trims in 150 steps cost nothing measurable.
    """

    def __init__(self, slack_bytes: int = DEFAULT_SLACK_BYTES, settle_steps: int = 20,
                 resident: Callable[[], int | None] = resident_bytes, trim: Callable[[], bool] = release_free_memory,
                 ) -> None:
        """`resident` reads the resident set and `trim` hands free pages back (the defaults: this process's)."""
        self.slack, self.settle_steps = slack_bytes, settle_steps
        self.resident, self.trim = resident, trim
        self.enabled = _TRIM is not None and resident() is not None
        self.level = 0
        self.steps = self.trims = 0

    def after_step(self) -> None:
        if not self.enabled:
            return
        resident = self.resident()
        self.steps += 1
        if self.steps <= self.settle_steps:
            self.level = max(self.level, resident)
        elif resident > self.level + self.slack:
            self.trim()
            self.trims += 1


def allocate_state_now(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's per-parameter state (AdamW's moments) now rather than in the first step.

    Made in the first step, after the backward pass has freed that step's activations, the ~90 MB of
    moments land in the holes those left all over glibc's heap, and stay there: every later step's
    activations then fit only between them, and on CPU the heap grows with each new mix of sizes
    (see `HeapReleaser`). Made before any activation exists, they sit together below them. A step with zero
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

"""Activation checkpointing for phase 1 (`TrainingArguments(gradient_checkpointing=True)`).

A training step keeps every layer's activations of all its distinct texts until the backward pass:
on MiniLM ~30 KB per token per layer, so a step of 32 distinct texts (a batch of 16 pairs with few
repeats, e.g. 5 classes x 64 shots) holds about twice what a step of 16 does (189 vs 92 MB measured).
With checkpointing, each transformer layer keeps only its input and runs its forward again during the
backward pass, so a step holds one layer of one micro-batch at a time, and on CPU micro-batches are kept
to 256 padded tokens (`EngineOptions.checkpointed_micro_batch_tokens`): memory hardly depends on the
step's texts, at the price of a second forward pass and smaller products (+45-50% time per CPU step).

`torch.utils.checkpoint` replays each layer with the random state it first ran with, so dropout draws
the same masks and the gradients are the same: bit for bit where the micro-batches are the same, to float
rounding where the cap splits them (texts padded to other widths).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def layer_stack(body: nn.Module) -> nn.ModuleList | None:
    """The body's stack of transformer layers: its longest `nn.ModuleList` of same-type modules with
    parameters (BERT's `encoder.layer`), or None."""
    stacks = [m for m in body.modules() if isinstance(m, nn.ModuleList) and len(m) > 0
              and len({type(layer) for layer in m}) == 1 and any(True for _ in m[0].parameters())]
    return max(stacks, key=len, default=None)


def _checkpointed(layer: nn.Module) -> Callable:
    forward = layer.forward

    def run(*args, **kwargs):
        if not (layer.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)

    return run


@contextmanager
def checkpointed_layers(body: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Inside, each layer of `layer_stack(body)` recomputes its activations in the backward pass instead of
    keeping them; yields how many layers do. Module names and parameters are untouched (the layers' `forward`
    is replaced on the instances), and everything is back in place on the way out, also after an error."""
    if not enabled:
        yield 0
        return
    stack = layer_stack(body)
    if stack is None:
        raise ValueError(
            f"gradient_checkpointing=True needs a body whose transformer keeps its layers in an nn.ModuleList "
            f"(as BERT, MPNet, RoBERTa do); {type(body).__name__} has none. Set gradient_checkpointing=False"
        )
    layers = list(stack)
    for layer in layers:
        layer.forward = _checkpointed(layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            del layer.forward  # the class's forward shows through again

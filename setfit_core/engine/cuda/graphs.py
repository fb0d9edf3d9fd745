"""Whole-step CUDA graphs for phase 1 on a GPU.

An eager training step of MiniLM at batch 16 launches about a thousand small kernels (forward,
backward, gradient clipping, AdamW); on an H200 Python queues them more slowly (~18 ms/step) than the
device runs them, so the GPU mostly waits. A CUDA graph records one step's kernels once and replays
them with a single launch: the same step then takes what the kernels take (~8 ms).

A graph needs fixed shapes and fixed memory, so each step's indices are copied into static buffers
that the recorded step reads:
- distinct rows padded to the step's number of text occurrences by repeating its first row; no loss
  term reads a padding row, so its gradient is zero;
- token width rounded up to a multiple of WIDTH_ROUND (capped at the cache's width); padding tokens are
  masked out of attention and mean pooling, so embeddings do not change.
One graph per (pairs, occurrences, width) shape, recorded the CAPTURE_AT-th time that shape occurs;
earlier and rarer steps (e.g. a last, partial batch) run eagerly, as does everything when recording
fails (a loss that reads a value on the host, say). Dropout draws fresh masks on every replay
(PyTorch's graph-safe RNG). The optimizer must be capturable with a tensor learning rate
(`make_optimizer(..., graph_device=...)`), whose value the schedule fills in before every step.

All graphs record into one shared memory pool, so their memory is that of the largest step, not the
sum over shapes (with long texts there can be dozens of shapes, each holding a step's activations and
a full set of gradients). Sharing is safe here because replays never overlap and no graph output
outlives the next replay: the loss scalar is consumed before it, and the recorded gradients are
detached from the parameters right after recording.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from setfit_core.engine.encoding import TokenCache, gathered_loss
from setfit_core.engine.steps import Step

logger = logging.getLogger(__name__)

# Token widths are rounded up to a multiple of this: fewer shapes (graphs) for a little padding.
WIDTH_ROUND = 32
# A step shape is recorded when it occurs for this many-th time; before that its steps run eagerly.
CAPTURE_AT = 2


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    rows: torch.Tensor
    inverse: torch.Tensor
    target: torch.Tensor
    loss: torch.Tensor  # written by every replay

    def load(self, step: Step) -> None:
        """Copy a step's indices into the static buffers (device to device: the host never waits)."""
        n = len(step.rows)
        self.rows[:n].copy_(step.rows_on_device)
        if n < len(self.rows):
            self.rows[n:].copy_(step.rows_on_device[:1].expand(len(self.rows) - n))
        self.inverse.copy_(step.inverse)
        self.target.copy_(step.target)


class GraphedSteps:
    """Runs training steps from CUDA graphs where it can, eagerly (via `eager_step`) where it cannot."""

    def __init__(self, body, loss_fn, cache: TokenCache, optimizer: torch.optim.Optimizer,
                 autocast: Callable[[], AbstractContextManager], eager_step: Callable[[Step], torch.Tensor]) -> None:
        self.body, self.loss_fn, self.cache, self.optimizer = body, loss_fn, cache, optimizer
        self.autocast, self.eager_step = autocast, eager_step
        self.device = body.device
        self.side = torch.cuda.Stream(self.device)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple[int, int, int], _Graph] = {}
        self.seen: Counter = Counter()
        self.failed = False
        self.eager_steps = self.replays = 0
        self.params = [p for p in body.parameters() if p.requires_grad]
        self.max_width = int(cache.features["input_ids"].shape[1])

    def step(self, step: Step) -> torch.Tensor:
        """One optimisation step; returns its loss (a tensor the next replay may overwrite)."""
        shape = self._shape(step)
        self.seen[shape] += 1
        graph = self.graphs.get(shape)
        if graph is None and self._may_capture(shape):
            graph = self._capture(shape, step)
        if graph is None:
            return self._eager(step)
        graph.load(step)
        graph.graph.replay()
        self.replays += 1
        return graph.loss

    def _shape(self, step: Step) -> tuple[int, int, int]:
        longest = int(self.cache.lengths[step.rows].max())
        width = min(self.max_width, -(-longest // WIDTH_ROUND) * WIDTH_ROUND)
        return step.num_pairs, len(step.inverse), width

    def _may_capture(self, shape) -> bool:
        # At least one eager step first: it creates the optimizer state and warms up the side stream.
        return not self.failed and self.eager_steps > 0 and self.seen[shape] >= CAPTURE_AT

    def _eager(self, step: Step) -> torch.Tensor:
        # Eager steps run on a side stream, as PyTorch asks of the steps before a capture.
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            loss = self.eager_step(step)
        torch.cuda.current_stream(self.device).wait_stream(self.side)
        self.eager_steps += 1
        return loss

    def _capture(self, shape: tuple[int, int, int], step: Step) -> _Graph | None:
        num_pairs, occurrences, width = shape
        index = dict(dtype=torch.long, device=self.device)
        buffers = [torch.zeros(occurrences, **index), torch.zeros(occurrences, **index), torch.zeros_like(step.target)]
        graph = _Graph(torch.cuda.CUDAGraph(), *buffers, loss=torch.zeros((), device=self.device))
        graph.load(step)
        # Gradients must not exist when recording: the recorded backward then writes fresh gradients
        # into the graph's own memory on every replay instead of adding to the previous step's.
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph.graph, pool=self.pool):
                graph.loss = self._recorded_step(graph, num_pairs, width)
        except Exception as exc:  # noqa: BLE001 - any failure to record means: train this run eagerly
            self.failed = True
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            logger.warning("could not record the training step as a CUDA graph (%s: %s); training eagerly",
                           type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return None
        # The recorded gradients live in the shared pool and every replay rewrites them; left on the
        # parameters, an eager step's backward would add to whatever the last replay wrote.
        self.optimizer.zero_grad(set_to_none=True)
        self.graphs[shape] = graph
        logger.debug("recorded a CUDA graph for steps of %d pairs, %d texts, width %d", *shape)
        return graph

    def _recorded_step(self, graph: _Graph, num_pairs: int, width: int) -> torch.Tensor:
        features = self.cache.features_at(graph.rows, width)
        with self.autocast():
            embeddings = self.body(features)["sentence_embedding"]
            loss = gathered_loss(self.loss_fn, embeddings, graph.inverse, graph.target, num_pairs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return loss.detach().float()

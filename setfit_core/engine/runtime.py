"""`start_engine`: applies `EngineOptions` to one phase-1 run and yields the `Engine` that runs its steps.

This is the one place that knows which speed-ups may run together. The rules, and why:

- CPU only: compact vocabulary (else sparse embedding gradients), fast dropout with phase 1's own
  attention, native GELU, bf16 products, lean activations, packed tokens, steps in parts, heap release.
  A GPU draws masks and multiplies cheaply; its per-step cost is launching kernels: CUDA graphs.
- bf16 products need our attention (its per-head products stay fp32, `cpu/matmul.py`) and no autocast
  (which has its own dtype rules).
- Packed tokens need our attention (only it attends per group on packed rows) and no gradient
  checkpointing (a checkpointed layer replays its forward in backward, outside the step's packing).
- Lean activations need fp32 products (beside 3-6x faster bf16 products the rebuilds cost 10-20% of a
  step) and no checkpointing (checkpointed layers keep next to nothing already, and offers would keep
  their inputs alive).
- Steps in parts need a loss that is a mean or a sum over its pairs (`PairLoss.additive`), a token cache
  that can be sliced, and no checkpointing (checkpointed steps keep one micro-batch's activations already).
- CUDA graphs need a sliceable cache, a capturable optimizer and no checkpointing (a recorded graph
  cannot hold a backward that replays a forward).

Everything applied is undone on the way out, also after an error, so the body leaves as it came in
(with trained weights). `Engine.report` says what ran.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass

import torch

from setfit_core.engine.cpu.attention import own_attention, uses_own_attention
from setfit_core.engine.cpu.dropout import fast_dropouts
from setfit_core.engine.cpu.gelu import native_gelu
from setfit_core.engine.cpu.heap import HeapReleaser, allocate_state_now, release_free_memory
from setfit_core.engine.cpu.matmul import amx_available, bf16_matmuls
from setfit_core.engine.cpu.packing import packed_layers
from setfit_core.engine.cpu.recompute import kept_lean, layer_norm_offers
from setfit_core.engine.cpu.vocabulary import compact_vocabulary, densify, sparse_vocabulary_grads
from setfit_core.engine.cuda.graphs import GraphedSteps
from setfit_core.engine.encoding import SPLIT_COST_TOKENS, TokenCache, step_loss
from setfit_core.engine.gradient_checkpointing import checkpointed_layers
from setfit_core.engine.optimizer import make_optimizer
from setfit_core.engine.options import EngineOptions
from setfit_core.engine.step_parts import split_pairs
from setfit_core.engine.steps import Step

logger = logging.getLogger(__name__)


_SPEEDUPS = ("compact_vocabulary", "sparse_vocabulary_grads", "fast_dropout", "own_attention", "native_gelu",
             "bf16_matmul", "packed_tokens", "lean_activations", "release_heap", "cuda_graphs")


@dataclass
class EngineReport:
    """What the engine did in one run: which speed-ups were in place, and counts of what they did."""

    device: str
    compact_vocabulary: bool = False
    sparse_vocabulary_grads: bool = False
    fast_dropout: bool = False
    own_attention: bool = False
    native_gelu: bool = False
    bf16_matmul: bool = False
    gradient_checkpointing: bool = False
    packed_tokens: bool = False
    lean_activations: bool = False
    part_max_tokens: int | None = None  # steps in parts, at most this many tokens each
    micro_batch_tokens: int | None = None  # checkpointed micro-batches on CPU
    release_heap: bool = False
    cuda_graphs: bool = False
    steps: int = 0
    steps_in_parts: int = 0
    rebuilt_activations: int = 0  # saved tensors rebuilt in backward instead of kept (lean activations)
    heap_trims: int = 0
    graphs_recorded: int = 0
    graphed_steps: int = 0

    def speedups(self) -> list[str]:
        """Names of the speed-ups in place, for the log."""
        names = [name.replace("_", " ") for name in _SPEEDUPS if getattr(self, name)]
        if self.part_max_tokens:
            names.append(f"parts of <= {self.part_max_tokens} tokens")
        return names

    def to_dict(self) -> dict:
        return asdict(self)


class Engine:
    """Runs phase-1 steps on a body prepared by `start_engine`: `step()` trains one, `whole_body()` puts the
    body's full state in place for a checkpoint or an evaluation, `optimizer` is AdamW over the body."""

    def __init__(self, body, loss_fn, cache: TokenCache, args, options: EngineOptions, report: EngineReport,
                 optimizer: torch.optim.Optimizer) -> None:
        self.body, self.loss_fn, self.cache, self.args = body, loss_fn, cache, args
        self.options, self.report, self.optimizer = options, report, optimizer
        self.vocabulary = None
        self.sparse_grads: list[torch.nn.Parameter] = []
        self.heap: HeapReleaser | None = None
        self.graphs: GraphedSteps | None = None
        self.split_cost = SPLIT_COST_TOKENS.get("cpu_bf16" if report.bf16_matmul else body.device.type, 0)

    def step(self, step: Step) -> torch.Tensor:
        """One optimisation step (forward, backward, clipping, AdamW); returns its loss, a device tensor."""
        self.report.steps += 1
        return self.graphs.step(step) if self.graphs is not None else self.eager_step(step)

    def eager_step(self, step: Step) -> torch.Tensor:
        parts = split_pairs(step, self.cache.lengths, self.report.part_max_tokens) if self.report.part_max_tokens \
            else [step]
        if len(parts) > 1:
            self.report.steps_in_parts += 1
        total = None
        for part in parts:
            with kept_lean(self.report.lean_activations) as offers:
                with autocast(self.body.device, self.args.use_amp):
                    loss = step_loss(self.body, self.loss_fn, self.cache, part, self.split_cost,
                                     self.report.micro_batch_tokens, self.report.packed_tokens)
                    if len(parts) > 1:
                        loss = loss * self.loss_fn.part_weight(part.num_pairs, step.num_pairs)
                loss.backward()
            if offers is not None:
                self.report.rebuilt_activations += offers.rebuilds
            total = loss.detach() if total is None else total + loss.detach()
        densify(self.sparse_grads)
        torch.nn.utils.clip_grad_norm_(self.body.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.heap is not None:
            self.heap.after_step()
        return total.float()

    def whole_body(self) -> AbstractContextManager:
        """The full word embedding, with the trained rows, in place for the block (a compact one trains)."""
        return self.vocabulary.whole() if self.vocabulary is not None else nullcontext()

    def loss_read_every(self) -> int:
        """Steps between reads of the loss on the host (every step on CPU)."""
        return self.options.cuda_loss_read_every if self.body.device.type == "cuda" else 1


@contextmanager
def start_engine(body, cache: TokenCache, loss_fn, args, options: EngineOptions) -> Iterator[Engine]:
    """Apply the speed-ups `options` allows for this body, device and `args` (`TrainingArguments`), following
    the rules in the module docstring; yield the `Engine`. On the way out the body is back as it came in,
    with its trained weights, and (CPU) AdamW's state and the steps' freed memory go back to the OS."""
    on_cpu = body.device.type == "cpu"
    checkpointed = bool(args.gradient_checkpointing)
    report = EngineReport(device=body.device.type, gradient_checkpointing=checkpointed)
    with ExitStack() as stack:
        enter = stack.enter_context
        vocabulary = enter(compact_vocabulary(body, cache, options.sparse_vocabulary_min_rows,
                                              on_cpu and options.compact_vocabulary))
        sparse_grads = enter(sparse_vocabulary_grads(body, options.sparse_vocabulary_min_rows,
                                                     on_cpu and vocabulary is None and options.sparse_vocabulary_grads))
        report.compact_vocabulary, report.sparse_vocabulary_grads = vocabulary is not None, bool(sparse_grads)
        if on_cpu and options.fast_dropout:
            report.fast_dropout = enter(fast_dropouts(body)) > 0
            report.own_attention = enter(own_attention(body))
        if on_cpu and options.native_gelu:
            report.native_gelu = enter(native_gelu(body)) > 0
        want_bf16 = options.bf16_matmul == "always" or (options.bf16_matmul == "auto" and amx_available())
        report.bf16_matmul = enter(bf16_matmuls(body, want_bf16 and report.own_attention and not args.use_amp))
        enter(checkpointed_layers(body, checkpointed))
        report.packed_tokens = enter(packed_layers(body, uses_own_attention,
                                                   options.packed_tokens and report.own_attention and not checkpointed))
        report.lean_activations = on_cpu and options.lean_activations and not checkpointed and not report.bf16_matmul
        enter(layer_norm_offers(body, report.lean_activations))
        if on_cpu and checkpointed:
            report.micro_batch_tokens = options.checkpointed_micro_batch_tokens
        if (on_cpu and cache.sliceable and not checkpointed and options.part_max_tokens is not None
                and loss_fn.kind == "pair" and loss_fn.additive):
            report.part_max_tokens = options.part_max_tokens
        graphs_wanted = options.cuda_graphs and body.device.type == "cuda" and cache.sliceable and not checkpointed
        # Built after the compact vocabulary is in place: AdamW then holds only the rows in use.
        optimizer = make_optimizer(body.parameters(), args.body_embedding_learning_rate, weight_decay=0.0,
                                   graph_device=body.device if graphs_wanted else None)
        engine = Engine(body, loss_fn, cache, args, options, report, optimizer)
        engine.vocabulary, engine.sparse_grads = vocabulary, sparse_grads
        if on_cpu and options.release_heap:
            engine.heap = HeapReleaser()
            report.release_heap = engine.heap.enabled
            allocate_state_now(optimizer)
        if graphs_wanted and torch.is_tensor(optimizer.param_groups[0]["lr"]):
            # Recording under autocast needs its weight cache off (PyTorch's CUDA graph notes).
            engine.graphs = GraphedSteps(body, loss_fn, cache, optimizer,
                                         lambda: autocast(body.device, args.use_amp, cache_enabled=False),
                                         engine.eager_step)
            report.cuda_graphs = True
        logger.info("engine on %s: %s", report.device, ", ".join(report.speedups()) or "no speed-ups")
        yield engine
    _finish(engine)


def _finish(engine: Engine) -> None:
    # Replayed steps leave their gradients in the graphs' memory: drop them, so no later phase adds to them
    # and the graphs' memory is freed with the graphs.
    engine.optimizer.zero_grad(set_to_none=True)
    if engine.graphs is not None:
        engine.report.graphs_recorded, engine.report.graphed_steps = len(engine.graphs.graphs), engine.graphs.replays
        logger.info("%d of %d steps replayed from %d CUDA graphs", engine.graphs.replays, engine.report.steps,
                    len(engine.graphs.graphs))
    if engine.heap is not None:
        engine.report.heap_trims = engine.heap.trims
        # AdamW's moments and the steps' freed activations (~300 MiB at 5 classes x 64 shots) would stay
        # resident through the phases after this one, whose own peaks then stack on top: hand them back.
        engine.optimizer.state.clear()
        release_free_memory()


def autocast(device: torch.device, enabled: bool, cache_enabled: bool = True):
    """`use_amp`'s autocast: bf16 on CPU and on GPUs that support it, else fp16."""
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

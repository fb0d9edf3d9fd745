"""Phase 1: contrastive fine-tuning of the sentence-transformers body.

A plain PyTorch loop instead of the Hugging Face Trainer: few-shot batches repeat texts (640 pairs over
16 texts at 8-shot), so each step encodes every *distinct* text of the batch once and gathers its
embedding for each pair it appears in. Recipe as setfit 1.2.0 / transformers: AdamW (no weight
decay), linear warm-up over `warmup_proportion` of the steps then linear decay, gradient norm clipped
at 1.0.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from setfit_core.args import TrainingArguments
from setfit_core.batching import (
    SPLIT_COST_TOKENS,
    Step,
    TokenCache,
    encode_rows,
    gathered_loss,
    prepare_steps,
    split_pairs,
)
from setfit_core.checkpointing import checkpointed_layers
from setfit_core.compact_vocabulary import compact_vocabulary, densify, sparse_vocabulary_grads
from setfit_core.cpu_dropout import cpu_dropout
from setfit_core.cpu_gelu import native_gelu
from setfit_core.cpu_matmul import bf16_matmuls
from setfit_core.cuda_graphs import GraphedSteps
from setfit_core.heap import HeapReleaser, release_free_memory
from setfit_core.losses import build_loss
from setfit_core.optimization import allocate_state_now, linear_schedule, make_optimizer, set_lr
from setfit_core.packing import packed_layers
from setfit_core.recompute import kept_lean, layer_norm_offers
from setfit_core.sampling import (
    PairPlan,
    balanced_per_label,
    group_steps_per_epoch,
    iter_balanced_batches,
    iter_group_batches,
    iter_pair_batches,
    make_pairs,
    pair_steps_per_epoch,
)
from setfit_core.seeding import set_seed
from setfit_core.tokenization import max_length_of

logger = logging.getLogger(__name__)

# Encode each distinct text of a batch once (see the module docstring); False only for A/B measurements.
DEDUPLICATE_TEXTS = True
# On a GPU, replay training steps from CUDA graphs (see cuda_graphs.py); False only for A/B measurements.
CUDA_GRAPHS = True
# On CPU, hand freed heap pages back to the OS once RSS has crept up (see heap.py); False only for A/B.
RELEASE_HEAP = True
# The fast preset's length (tuned on sst2/emotion 8- and 64-shot, see README "fast preset").
FAST_EPOCHS, FAST_MIN_STEPS, FAST_MAX_STEPS = 20.0, 20, 240
# On a GPU, reading the loss back every step would stall the host; it is read every this many steps.
CUDA_LOSS_READ_EVERY = 20
# Word embeddings at least this large are trained compactly or with sparse gradients on CPU (compact_vocabulary.py).
SPARSE_GRAD_MIN_VOCAB = 4096
# On CPU, train only the word-embedding rows the texts use (see compact_vocabulary.py); False only for A/B.
COMPACT_VOCABULARY = True
# On CPU, run GELU through PyTorch's kernel instead of oneDNN's per-shape ones (see cpu_gelu.py); False only for A/B.
CPU_NATIVE_GELU = True
# On CPU, draw dropout masks from 16-bit random integers (see cpu_dropout.py); False only for A/B.
CPU_FAST_DROPOUT = True
# On a CPU with AMX, multiply in bf16 with fp32 accumulation (see cpu_matmul.py); False only for A/B.
CPU_BF16_MATMUL = True
# On CPU with fp32 products, outputs that are cheap to recompute are not kept for backward (see recompute.py);
# False only for A/B. Not with bf16 products: there the rebuilds cost 10-20% of a step (README "Memory").
CPU_LEAN_ACTIVATIONS = True
# On CPU, the transformer layers see a step's real tokens only, not its padding (see packing.py); False only for A/B.
CPU_PACKED_TOKENS = True
# On CPU, a pair step whose distinct texts have more tokens than this trains in parts (batching.split_pairs), so
# a step's activations stay those of at most this many tokens whatever the batch size or dataset; None: never.
CPU_PART_MAX_TOKENS: int | None = 512
# With gradient_checkpointing on CPU, micro-batches of at most this many padded tokens (see checkpointing.py).
CHECKPOINTED_MICRO_BATCH_TOKENS = 256
# progress(step, total_steps, loss): after every step on CPU, every CUDA_LOSS_READ_EVERY steps on a GPU.
ProgressFn = Callable[[int, int, float], None]


@dataclass
class BodyTrainingResult:
    steps: int
    seconds: float
    train_loss: float
    num_pairs: int
    log: list[dict] = field(default_factory=list)
    graphed_steps: int = 0  # steps replayed from CUDA graphs (GPU only)


@dataclass
class _Batches:
    """The step stream of one training run: pairs or label groups, and how many steps it has."""

    kind: str
    total_steps: int
    iterator: Iterator
    num_pairs: int = 0


def plan_pairs(label_ids: np.ndarray, args: TrainingArguments) -> PairPlan:
    """The pairs phase 1 trains on, for these class ids and arguments (deterministic for args.seed)."""
    max_pairs = args.max_steps * args.embedding_batch_size if args.max_steps > 0 else -1
    return make_pairs(label_ids, args.seed, args.sampling_strategy, args.num_iterations, max_pairs)


def _plan_batches(
    label_ids: np.ndarray, args: TrainingArguments, kind: str, max_steps: int, plan: PairPlan | None = None
) -> _Batches:
    bs, epochs = args.embedding_batch_size, args.embedding_num_epochs
    if kind == "pair":
        plan = plan if plan is not None else plan_pairs(label_ids, args.replace(max_steps=max_steps))
        total = pair_steps_per_epoch(len(plan), bs) * epochs
        batches = iter_pair_batches(plan, bs, epochs, args.seed)
        return _Batches(kind, min(total, max_steps) if max_steps > 0 else total, batches, len(plan))
    if args.sampling_strategy == "label_balanced":
        per_label = balanced_per_label(label_ids, bs)
        total = max_steps if max_steps > 0 else fast_steps(len(label_ids), per_label * len(np.unique(label_ids)))
        return _Batches(kind, total, iter_balanced_batches(label_ids, per_label, total, args.seed))
    total = group_steps_per_epoch(label_ids, bs, args.samples_per_label) * epochs
    batches = iter_group_batches(label_ids, bs, epochs, args.seed, args.samples_per_label)
    return _Batches(kind, min(total, max_steps) if max_steps > 0 else total, batches)


def fast_steps(num_texts: int, batch_texts: int) -> int:
    """Steps of the fast preset: FAST_EPOCHS passes over the data, within [FAST_MIN_STEPS, FAST_MAX_STEPS]."""
    return int(min(FAST_MAX_STEPS, max(FAST_MIN_STEPS, round(FAST_EPOCHS * num_texts / batch_texts))))


def step_loss(body, loss_fn, cache: TokenCache, step: Step, split_cost: int | None = None,
              max_tokens: int | None = None, packed: bool = False) -> torch.Tensor:
    """Encode each distinct text of the step once; gather its embedding wherever it occurs."""
    if split_cost is None:
        split_cost = SPLIT_COST_TOKENS.get(body.device.type, 0)
    embeddings = encode_rows(body, cache, step.rows, split_cost, step.rows_on_device, max_tokens, packed)
    return gathered_loss(loss_fn, embeddings, step.inverse, step.target, step.num_pairs)


def train_body(
    body,
    texts: list[str],
    label_ids: np.ndarray,
    args: TrainingArguments,
    eval_texts: list[str] | None = None,
    eval_label_ids: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    pairs: PairPlan | None = None,
) -> BodyTrainingResult:
    """Fine-tune `body` in place on pairs (or label groups) built from `texts` and class ids.

    `pairs` (indices into `texts`) replaces the pairs `plan_pairs` would make, e.g. when they were
    generated and stored by an earlier pipeline stage.
    """
    set_seed(args.seed)
    loss_fn = build_loss(args.loss, args.margin, args.distance_metric, args.loss_params).to(body.device)
    batches = _plan_batches(np.asarray(label_ids), args, loss_fn.kind, args.max_steps, pairs)
    total = batches.total_steps
    cache = TokenCache(body, texts, max_length_of(body, args.max_length))
    # A checkpointed layer's backward replays its forward, which a recorded graph cannot hold: eager then.
    graphs_wanted = CUDA_GRAPHS and body.device.type == "cuda" and cache.sliceable and not args.gradient_checkpointing
    heap = HeapReleaser() if RELEASE_HEAP and body.device.type == "cpu" else None
    lr_at = linear_schedule(args.body_embedding_learning_rate, math.ceil(total * args.warmup_proportion), total)
    evaluator = _Evaluator.create(body, loss_fn, eval_texts, eval_label_ids, args)
    logger.info("body training: %d steps, %d pairs, batch size %d", total, batches.num_pairs, args.embedding_batch_size)

    body.train()
    started = time.perf_counter()
    on_cpu = body.device.type == "cpu"
    # Checkpointed layers keep next to nothing already, and offers would keep their inputs alive.
    may_lean = CPU_LEAN_ACTIVATIONS and on_cpu and not args.gradient_checkpointing
    with (compact_vocabulary(body, cache, SPARSE_GRAD_MIN_VOCAB, COMPACT_VOCABULARY and on_cpu) as vocabulary,
          sparse_vocabulary_grads(body, SPARSE_GRAD_MIN_VOCAB, on_cpu and vocabulary is None) as sparse_grads,
          cpu_dropout(body) if CPU_FAST_DROPOUT and on_cpu else nullcontext(False) as own_attention,
          native_gelu(body) if CPU_NATIVE_GELU and on_cpu else nullcontext(0),
          # Only with our attention, whose per-head products stay fp32 (see cpu_matmul.py); autocast has its own.
          bf16_matmuls(body, CPU_BF16_MATMUL and own_attention and not args.use_amp) as in_bf16,
          checkpointed_layers(body, args.gradient_checkpointing),
          # A checkpointed layer replays its forward in backward, outside the step's packing: not with it.
          packed_layers(body, CPU_PACKED_TOKENS and own_attention and not args.gradient_checkpointing) as packed,
          # Rebuilds only with fp32 products (see CPU_LEAN_ACTIVATIONS): no LayerNorm hooks on the bf16 path.
          layer_norm_offers(body, lean := may_lean and not in_bf16)):
        split_cost = SPLIT_COST_TOKENS.get("cpu_bf16" if in_bf16 else body.device.type, 0)
        # Checkpointed, a layer holds one micro-batch's activations at a time: keep micro-batches small.
        max_tokens = CHECKPOINTED_MICRO_BATCH_TOKENS if args.gradient_checkpointing and on_cpu else None
        # Checkpointed layers keep one micro-batch's activations already; a loss coupling its pairs cannot split.
        part_tokens = (CPU_PART_MAX_TOKENS if on_cpu and cache.sliceable and not args.gradient_checkpointing
                       and getattr(loss_fn, "part_weight", lambda *_: None)(1, 2) is not None else None)
        # Built after the compact vocabulary is in place: AdamW then holds only the rows in use.
        optimizer = make_optimizer(body.parameters(), args.body_embedding_learning_rate, weight_decay=0.0,
                                   graph_device=body.device if graphs_wanted else None)
        if on_cpu:
            allocate_state_now(optimizer)

        def eager_step(prepared: Step) -> torch.Tensor:
            parts = split_pairs(prepared, cache.lengths, part_tokens) if part_tokens else [prepared]
            total = None
            for part in parts:
                with kept_lean(lean):
                    with _autocast(body.device, args.use_amp):
                        loss = step_loss(body, loss_fn, cache, part, split_cost, max_tokens, packed)
                        if len(parts) > 1:
                            loss = loss * loss_fn.part_weight(part.num_pairs, prepared.num_pairs)
                    loss.backward()
                total = loss.detach() if total is None else total + loss.detach()
            densify(sparse_grads)
            torch.nn.utils.clip_grad_norm_(body.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if heap is not None:
                heap.after_step()
            return total.float()

        run_step = eager_step
        graphs = None
        if graphs_wanted and torch.is_tensor(optimizer.param_groups[0]["lr"]):
            # Recording under autocast needs its weight cache off (PyTorch's CUDA graph notes).
            graphs = GraphedSteps(body, loss_fn, cache, optimizer,
                                  lambda: _autocast(body.device, args.use_amp, cache_enabled=False), eager_step)
            run_step = graphs.step
        steps = prepare_steps(batches.iterator, batches.kind, np.asarray(label_ids), body.device, DEDUPLICATE_TEXTS)
        whole_body = vocabulary.whole if vocabulary is not None else nullcontext
        step, loss_sum, log = _run_steps(body, run_step, steps, total, args, optimizer, lr_at, evaluator, progress,
                                         whole_body)
    # Replayed steps leave their gradients in the graphs' memory: drop them, so no later phase adds to them
    # and the graphs' memory is freed with the graphs.
    optimizer.zero_grad(set_to_none=True)
    if heap is not None:
        # AdamW's moments and the steps' freed activations (~300 MiB at 5 classes x 64 shots) would stay
        # resident through the phases after this one, whose own peaks then stack on top: hand them back.
        optimizer.state.clear()
        release_free_memory()
    body.eval()
    evaluator.restore_best()
    graphed = graphs.replays if graphs is not None else 0
    if graphs is not None:
        logger.info("body training: %d of %d steps replayed from %d CUDA graphs", graphed, step, len(graphs.graphs))
    return BodyTrainingResult(step, time.perf_counter() - started, loss_sum / max(1, step), batches.num_pairs, log,
                              graphed)


def _run_steps(body, run_step: Callable[[Step], torch.Tensor], steps: Iterator[Step], total: int,
               args: TrainingArguments, optimizer, lr_at: Callable[[int], float], evaluator,
               progress: ProgressFn | None, whole_body: Callable[[], AbstractContextManager] = nullcontext,
               ) -> tuple[int, float, list[dict]]:
    """The optimisation loop; returns (steps run, summed loss, log rows). Evaluation and checkpoints run
    inside `whole_body()`, which puts the full word embedding back in place while a compact one trains."""
    log, step = [], 0
    loss_sum = torch.zeros((), device=body.device)
    read_every = CUDA_LOSS_READ_EVERY if body.device.type == "cuda" else 1
    bar = _progress_bar(total, args.show_progress_bar)
    for prepared in steps:
        if step == total:
            break
        set_lr(optimizer, lr_at(step))
        step += 1
        loss = run_step(prepared)
        loss_sum += loss
        if step % read_every and step != total and not _must_read(args, step, total):
            continue  # let the host queue the next step while the device works
        value = float(loss)
        _log_step(args, step, total, value, lr_at(step), log)
        if _needs_whole_body(args, step, total):
            with whole_body():
                evaluator.maybe_evaluate(step, total, log)
                _maybe_save(body, args, step, total)
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{value:.4f}")
        if progress is not None:
            progress(step, total, value)
    if bar is not None:
        bar.close()
    return step, float(loss_sum), log


def _must_read(args: TrainingArguments, step: int, total: int) -> bool:
    """Steps whose loss is logged, or that evaluate or save, need the value now."""
    logged = args.logging_strategy == "steps" and (step % args.logging_steps == 0 or (step == 1 and args.logging_first_step))
    return logged or _needs_whole_body(args, step, total)


def _needs_whole_body(args: TrainingArguments, step: int, total: int) -> bool:
    """Steps that may evaluate or save a checkpoint."""
    per_epoch = max(1, total // args.embedding_num_epochs)
    evaluated = _is_due(args.eval_strategy, args.eval_steps, step, total, per_epoch)
    return evaluated or _is_due(args.save_strategy, args.save_steps, step, total, per_epoch)


def _autocast(device: torch.device, enabled: bool, cache_enabled: bool = True):
    dtype = torch.bfloat16 if device.type == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


def _progress_bar(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Body training", unit="step")


def _log_step(args: TrainingArguments, step: int, total: int, loss: float, lr: float, log: list[dict]) -> None:
    if args.logging_strategy == "no":
        return
    if (step == 1 and args.logging_first_step) or (args.logging_strategy == "steps" and step % args.logging_steps == 0):
        log.append({"step": step, "embedding_loss": loss, "learning_rate": lr})
        logger.info("step %d/%d: embedding_loss=%.4f lr=%.2e", step, total, loss, lr)


def _is_due(strategy: str, every: int | None, step: int, total: int, steps_per_epoch: int) -> bool:
    if strategy == "steps":
        return bool(every) and step % every == 0
    if strategy == "epoch":
        return step % max(1, steps_per_epoch) == 0 or step == total
    return False


def _maybe_save(body, args: TrainingArguments, step: int, total: int) -> None:
    steps_per_epoch = max(1, total // args.embedding_num_epochs)
    if not _is_due(args.save_strategy, args.save_steps, step, total, steps_per_epoch):
        return
    root = Path(args.output_dir)
    body.save(str(root / f"checkpoint-{step}"))
    if args.save_total_limit:
        checkpoints = sorted(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        for old in checkpoints[: -args.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)


class _Evaluator:
    """Embedding loss on eval pairs during phase 1 (`eval_strategy`), optionally keeping the best body."""

    def __init__(self, body, loss_fn, cache: TokenCache | None, batches_fn, args: TrainingArguments, label_ids) -> None:
        self.body, self.loss_fn, self.cache, self.batches_fn = body, loss_fn, cache, batches_fn
        self.args, self.label_ids = args, label_ids
        self.best: tuple[float, dict] | None = None

    @classmethod
    def create(cls, body, loss_fn, texts, label_ids, args: TrainingArguments) -> _Evaluator:
        if texts is None or label_ids is None or args.eval_strategy == "no":
            return cls(body, loss_fn, None, None, args, None)
        label_ids = np.asarray(label_ids)
        eval_args = args.replace(num_epochs=(1, args.classifier_num_epochs))
        cache = TokenCache(body, texts, max_length_of(body, args.max_length))
        return cls(body, loss_fn, cache, lambda: _plan_batches(label_ids, eval_args, loss_fn.kind, args.eval_max_steps),
                   args, label_ids)

    def maybe_evaluate(self, step: int, total: int, log: list[dict]) -> None:
        if self.cache is None or step <= self.args.eval_delay:
            return
        if not _is_due(self.args.eval_strategy, self.args.eval_steps, step, total, total // self.args.embedding_num_epochs):
            return
        batches = self.batches_fn()
        self.body.eval()
        with torch.no_grad():
            steps = prepare_steps(batches.iterator, batches.kind, self.label_ids, self.body.device)
            losses = [float(step_loss(self.body, self.loss_fn, self.cache, s))
                      for _, s in zip(range(batches.total_steps), steps)]
        self.body.train()
        value = float(np.mean(losses))
        log.append({"step": step, "eval_embedding_loss": value})
        logger.info("step %d: eval_embedding_loss=%.4f", step, value)
        if self.args.load_best_model_at_end and (self.best is None or value < self.best[0]):
            self.best = (value, {k: v.detach().cpu().clone() for k, v in self.body.state_dict().items()})

    def restore_best(self) -> None:
        if self.best is not None:
            logger.info("restoring the body with the lowest eval_embedding_loss (%.4f)", self.best[0])
            self.body.load_state_dict(self.best[1])

"""Phase 1: contrastive fine-tuning of the sentence-transformers body (setfit's "embedding phase").

The SetFit loop, as setfit 1.2.0 / transformers run it: pairs (or label groups) in batches, AdamW with
no weight decay, linear warm-up over `warmup_proportion` of the steps then linear decay, gradient norm
clipped at 1.0. How each step is computed (which texts are encoded, on which kernels) is the engine's
business (`setfit_core.engine`); this module reads as the algorithm.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from setfit_core.args import TrainingArguments
from setfit_core.engine import Engine, EngineOptions, EngineReport, TokenCache, prepare_steps, set_lr, start_engine
from setfit_core.losses import build_loss
from setfit_core.seeding import set_seed
from setfit_core.tokenization import max_length_of
from setfit_core.training.batches import BatchStream, batch_stream, describe_phase1
from setfit_core.training.checkpoints import Resume, load_checkpoint, restore, save_checkpoint
from setfit_core.training.embedding_eval import EmbeddingEvaluator, is_logged, log_step, needs_whole_body, save_due
from setfit_core.training.sampling import PairSet

logger = logging.getLogger(__name__)

# progress(step, total_steps, loss): after every step on CPU, every few steps on a GPU.
ProgressFn = Callable[[int, int, float], None]


@dataclass
class BodyTrainingResult:
    steps: int
    seconds: float
    train_loss: float
    num_pairs: int
    log: list[dict] = field(default_factory=list)
    engine: EngineReport | None = None  # which speed-ups ran, and what they did
    resumed_from_step: int = 0  # the checkpoint's step when the run resumed from one


def train_body(
    body,
    texts: list[str],
    label_ids: np.ndarray,
    args: TrainingArguments,
    eval_texts: list[str] | None = None,
    eval_label_ids: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    pairs: PairSet | None = None,
    engine: EngineOptions | None = None,
    resume_from_checkpoint: str | Path | None = None,
) -> BodyTrainingResult:
    """Fine-tune `body` in place on pairs (or label groups) built from `texts` and class ids.

    `pairs` (indices into `texts`) replaces the pairs `sample_pairs` would draw, e.g. when an earlier
    pipeline stage generated and stored them. `engine` chooses the speed-ups (default: all that apply).
    `resume_from_checkpoint`: a `checkpoint-<step>` directory of an earlier run with the same arguments and
    data (see `checkpoints.py`); training goes on from its step.
    """
    set_seed(args.seed)
    resume = load_checkpoint(resume_from_checkpoint, body) if resume_from_checkpoint else None
    loss_fn = build_loss(args.loss, args.margin, args.distance_metric, args.loss_params).to(body.device)
    stream = batch_stream(np.asarray(label_ids), args, loss_fn.kind, args.max_steps, pairs)
    cache = TokenCache(body, texts, max_length_of(body, args.max_length))
    evaluator = EmbeddingEvaluator.create(body, loss_fn, eval_texts, eval_label_ids, args)
    logger.info("phase 1: %s", describe_phase1(label_ids, args))
    body.train()
    started = time.perf_counter()
    with start_engine(body, cache, loss_fn, args, engine or EngineOptions()) as running:
        steps, loss_sum, log = _run_steps(running, stream, np.asarray(label_ids), args, evaluator, progress, resume)
    body.eval()
    evaluator.restore_best()
    return BodyTrainingResult(steps, time.perf_counter() - started, loss_sum / max(1, steps), stream.num_pairs, log,
                              running.report, resume.step if resume else 0)


def _run_steps(engine: Engine, stream: BatchStream, label_ids: np.ndarray, args: TrainingArguments,
               evaluator: EmbeddingEvaluator, progress: ProgressFn | None,
               resume: Resume | None = None) -> tuple[int, float, list[dict]]:
    """The optimisation loop; returns (steps run, summed loss, log rows)."""
    body, total = engine.body, stream.total_steps
    lr_at = linear_schedule(args.body_embedding_learning_rate, math.ceil(total * args.warmup_proportion), total)
    steps = prepare_steps(stream.batches, stream.kind, label_ids, body.device, engine.options.deduplicate_texts)
    log, step, loss_sum = [], 0, torch.zeros((), device=body.device)
    if resume is not None:  # the batches already trained are drawn and skipped: the stream follows the seed
        steps = itertools.islice(steps, resume.step, None)
        log, step, loss_sum = list(resume.log), resume.step, torch.tensor(resume.loss_sum, device=body.device)
        restore(resume, engine.optimizer)
    bar = _progress_bar(total, args.show_progress_bar)
    for prepared in steps:
        if step == total:
            break
        set_lr(engine.optimizer, lr_at(step))
        step += 1
        loss = engine.step(prepared)
        loss_sum += loss
        wanted = is_logged(args, step) or needs_whole_body(args, step, total)
        if step % engine.loss_read_every() and step != total and not wanted:
            continue  # let the host queue the next step while the device works
        value = float(loss)
        log_step(args, step, total, value, lr_at(step), log)
        if needs_whole_body(args, step, total):
            with engine.whole_body():
                evaluator.maybe_evaluate(step, total, log)
                if save_due(args, step, total):
                    save_checkpoint(Path(args.output_dir), body, engine.optimizer, step, float(loss_sum), log,
                                    args.save_total_limit)
        if bar is not None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{value:.4f}")
        if progress is not None:
            progress(step, total, value)
    if bar is not None:
        bar.close()
    return step, float(loss_sum), log


def linear_schedule(base_lr: float, warmup: int, total: int) -> Callable[[int], float]:
    """Learning rate after `step` steps: linear warm-up over `warmup` steps, then linear decay to 0."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return base_lr * step / max(1, warmup)
        return base_lr * max(0.0, (total - step) / max(1, total - warmup))

    return lr_at


def _progress_bar(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Body training", unit="step")

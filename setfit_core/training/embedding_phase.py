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
from typing import Any

import numpy as np
import torch

from setfit_core.args import TrainingArguments
from setfit_core.engine import Engine, EngineOptions, EngineReport, TokenCache, prepare_steps, set_lr, start_engine
from setfit_core.losses import build_loss
from setfit_core.seeding import set_seed
from setfit_core.tokenization import max_length_of
from setfit_core.training.batches import BatchStream, batch_stream, describe_phase1
from setfit_core.training.callbacks import CallbackHandler, PhaseEvents
from setfit_core.training.checkpoints import Resume, load_checkpoint, restore, save_checkpoint
from setfit_core.training.embedding_eval import (
    EmbeddingEvaluator,
    evaluation_due,
    is_logged,
    log_step,
    save_due,
    steps_per_epoch,
)
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
    state: Any = None  # transformers' TrainerState at the end, when callbacks ran


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
    callbacks: CallbackHandler | None = None,
    model: Any = None,
) -> BodyTrainingResult:
    """Fine-tune `body` in place on pairs (or label groups) built from `texts` and class ids.

    `pairs` (indices into `texts`) replaces the pairs `sample_pairs` would draw, e.g. when an earlier
    pipeline stage generated and stored them. `engine` chooses the speed-ups (default: all that apply).
    `resume_from_checkpoint`: a `checkpoint-<step>` directory of an earlier run with the same arguments and
    data (see `checkpoints.py`); training goes on from its step. `callbacks` get transformers' events
    (`callbacks.py`), with `model` (the `SetFitModel`, else the body) as their `model=`.
    """
    set_seed(args.seed)
    resume = load_checkpoint(resume_from_checkpoint, body) if resume_from_checkpoint else None
    loss_fn = build_loss(args.loss, args.margin, args.distance_metric, args.loss_params).to(body.device)
    stream = batch_stream(np.asarray(label_ids), args, loss_fn.kind, args.max_steps, pairs)
    cache = TokenCache(body, texts, max_length_of(body, args.max_length))
    evaluator = EmbeddingEvaluator.create(body, loss_fn, eval_texts, eval_label_ids, args)
    events = None
    if callbacks is not None and callbacks.callbacks:
        events = PhaseEvents(callbacks, args, model if model is not None else body, stream.total_steps,
                             steps_per_epoch(args, stream.total_steps), args.embedding_num_epochs,
                             args.embedding_batch_size, resume.step if resume else 0, resume.log if resume else None)
    logger.info("phase 1: %s", describe_phase1(label_ids, args))
    body.train()
    started = time.perf_counter()
    with start_engine(body, cache, loss_fn, args, engine or EngineOptions()) as running:
        steps, loss_sum, log = _run_steps(running, stream, np.asarray(label_ids), args, evaluator, progress, resume,
                                          events)
    body.eval()
    evaluator.restore_best()
    seconds = time.perf_counter() - started
    trained = steps - (resume.step if resume else 0)
    if events is not None:  # transformers' closing log row, then on_train_end
        events.log({"train_runtime": seconds, "train_steps_per_second": trained / max(seconds, 1e-9),
                    "train_loss": loss_sum / max(1, steps)})
        events.train_end()
    return BodyTrainingResult(steps, seconds, loss_sum / max(1, steps), stream.num_pairs, log, running.report,
                              resume.step if resume else 0, events.state if events is not None else None)


def _run_steps(engine: Engine, stream: BatchStream, label_ids: np.ndarray, args: TrainingArguments,
               evaluator: EmbeddingEvaluator, progress: ProgressFn | None,
               resume: Resume | None = None, events: PhaseEvents | None = None) -> tuple[int, float, list[dict]]:
    """The optimisation loop; returns (steps run, summed loss, log rows).

    On a GPU the loss is read back only every `loss_read_every` steps and where a step logs, evaluates or
    saves, so the host can queue steps ahead. Callbacks (`events`) fire on every step without reading it;
    only what they ask for (`control.should_log/evaluate/save`) makes a step read it."""
    body, total = engine.body, stream.total_steps
    lr_at = linear_schedule(args.body_embedding_learning_rate, math.ceil(total * args.warmup_proportion), total)
    steps = prepare_steps(stream.batches, stream.kind, label_ids, body.device, engine.options.deduplicate_texts)
    log, step, loss_sum = [], 0, torch.zeros((), device=body.device)
    if resume is not None:  # the batches already trained are drawn and skipped: the stream follows the seed
        steps = itertools.islice(steps, resume.step, None)
        log, step, loss_sum = list(resume.log), resume.step, torch.tensor(resume.loss_sum, device=body.device)
        restore(resume, engine.optimizer)
    bar = _progress_bar(total, args.show_progress_bar)
    if events is not None:
        events.train_begin()
    for prepared in steps:
        if step == total:
            break
        set_lr(engine.optimizer, lr_at(step))
        if events is not None:
            events.step_begin()
        step += 1
        loss = engine.step(prepared)
        loss_sum += loss
        if events is not None:
            events.step_end(step)
        due = _Due.after(args, step, total, events)
        if due.any or not step % engine.loss_read_every() or step == total:
            value = float(loss)  # the host waits for the device here
            _log_evaluate_save(engine, evaluator, args, due, step, total, value, lr_at(step), loss_sum, log, events)
            if bar is not None:
                bar.update(step - bar.n)
                bar.set_postfix(loss=f"{value:.4f}")
            if progress is not None:
                progress(step, total, value)
        if events is not None and _epoch_boundary(events, step, total):
            break
    if bar is not None:
        bar.close()
    return step, float(loss_sum), log


@dataclass(frozen=True)
class _Due:
    """What a step does besides training: the strategies' schedule, plus what callbacks asked for."""

    log: bool
    evaluate: bool
    save: bool

    @classmethod
    def after(cls, args: TrainingArguments, step: int, total: int, events: PhaseEvents | None) -> _Due:
        control = events.control if events is not None else None
        return cls(is_logged(args, step) or (control is not None and control.should_log),
                   evaluation_due(args, step, total) or (control is not None and control.should_evaluate),
                   save_due(args, step, total) or (control is not None and control.should_save))

    @property
    def any(self) -> bool:
        return self.log or self.evaluate or self.save


def _log_evaluate_save(engine: Engine, evaluator: EmbeddingEvaluator, args: TrainingArguments, due: _Due, step: int,
                       total: int, value: float, lr: float, loss_sum: torch.Tensor, log: list[dict],
                       events: PhaseEvents | None) -> None:
    if due.log:
        row = log_step(step, total, value, lr, log)
        if events is not None:
            events.log({k: v for k, v in row.items() if k != "step"})
    if not (due.evaluate or due.save):
        return
    with engine.whole_body():
        metric = evaluator.evaluate(step, log) if due.evaluate else None
        if metric is not None and events is not None:
            events.evaluate({"eval_embedding_loss": metric})
        if due.save:
            path = save_checkpoint(Path(args.output_dir), engine.body, engine.optimizer, step, float(loss_sum), log,
                                   args.save_total_limit)
            if events is not None:
                events.save(str(path))


def _epoch_boundary(events: PhaseEvents, step: int, total: int) -> bool:
    """Epoch events at the epoch's last step; True when a callback stopped training."""
    stop = events.control.should_training_stop
    if stop or step == total or events.at_epoch_end(step):
        events.epoch_end()
        stop = stop or events.control.should_training_stop
        if not stop and step != total:
            events.epoch_begin()
    if stop and step != total:
        logger.info("phase 1 stopped by a callback after step %d of %d", step, total)
    return stop


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

"""What phase 1 does besides training: the eval embedding loss (`eval_strategy`), keeping the best body
(`load_best_model_at_end`), logging (`logging_strategy`) and when checkpoints are due (`save_strategy`;
`checkpoints.py` writes them), each on transformers' schedule ("no", "steps" every N steps, "epoch")."""

from __future__ import annotations

import logging

import numpy as np
import torch

from setfit_core.args import TrainingArguments
from setfit_core.engine.encoding import TokenCache, step_loss
from setfit_core.engine.steps import prepare_steps
from setfit_core.tokenization import max_length_of
from setfit_core.training.batches import batch_stream

logger = logging.getLogger(__name__)


def is_due(strategy: str, every: int | None, step: int, total: int, steps_per_epoch: int) -> bool:
    if strategy == "steps":
        return bool(every) and step % every == 0
    if strategy == "epoch":
        return step % max(1, steps_per_epoch) == 0 or step == total
    return False


def steps_per_epoch(args: TrainingArguments, total: int) -> int:
    return max(1, total // args.embedding_num_epochs)


def is_logged(args: TrainingArguments, step: int) -> bool:
    first = step == 1 and args.logging_first_step
    return args.logging_strategy != "no" and (first or (args.logging_strategy == "steps"
                                                        and step % args.logging_steps == 0))


def evaluation_due(args: TrainingArguments, step: int, total: int) -> bool:
    """Whether `eval_strategy` asks for an evaluation after `step`."""
    return is_due(args.eval_strategy, args.eval_steps, step, total, steps_per_epoch(args, total))


def log_step(step: int, total: int, loss: float, lr: float, log: list[dict]) -> dict:
    row = {"step": step, "embedding_loss": loss, "learning_rate": lr}
    log.append(row)
    logger.info("step %d/%d: embedding_loss=%.4f lr=%.2e", step, total, loss, lr)
    return row


def save_due(args: TrainingArguments, step: int, total: int) -> bool:
    """Whether `save_strategy` asks for a checkpoint after `step`."""
    return is_due(args.save_strategy, args.save_steps, step, total, steps_per_epoch(args, total))


class EmbeddingEvaluator:
    """Embedding loss on eval pairs during phase 1 (`eval_strategy`), optionally keeping the best body."""

    def __init__(self, body, loss_fn, cache: TokenCache | None, args: TrainingArguments, label_ids) -> None:
        self.body, self.loss_fn, self.cache = body, loss_fn, cache
        self.args, self.label_ids = args, label_ids
        self.best: tuple[float, dict] | None = None

    @classmethod
    def create(cls, body, loss_fn, texts, label_ids, args: TrainingArguments) -> EmbeddingEvaluator:
        if texts is None or label_ids is None or args.eval_strategy == "no":
            return cls(body, loss_fn, None, args, None)
        cache = TokenCache(body, texts, max_length_of(body, args.max_length))
        return cls(body, loss_fn, cache, args, np.asarray(label_ids))

    def evaluate(self, step: int, log: list[dict]) -> float | None:
        """The eval embedding loss after `step` (None without eval data or before `eval_delay`), logged in `log`;
        the caller decides whether one is due (`evaluation_due`, or a callback's `should_evaluate`)."""
        if self.cache is None or step <= self.args.eval_delay:
            return None
        eval_args = self.args.replace(num_epochs=(1, self.args.classifier_num_epochs))
        stream = batch_stream(self.label_ids, eval_args, self.loss_fn.kind, self.args.eval_max_steps)
        self.body.eval()
        with torch.no_grad():
            steps = prepare_steps(stream.batches, stream.kind, self.label_ids, self.body.device)
            losses = [float(step_loss(self.body, self.loss_fn, self.cache, s))
                      for _, s in zip(range(stream.total_steps), steps, strict=False)]
        self.body.train()
        value = float(np.mean(losses))
        log.append({"step": step, "eval_embedding_loss": value})
        logger.info("step %d: eval_embedding_loss=%.4f", step, value)
        if self.args.load_best_model_at_end and (self.best is None or value < self.best[0]):
            self.best = (value, {k: v.detach().cpu().clone() for k, v in self.body.state_dict().items()})
        return value

    def restore_best(self) -> None:
        if self.best is not None:
            logger.info("restoring the body with the lowest eval_embedding_loss (%.4f)", self.best[0])
            self.body.load_state_dict(self.best[1])

"""Phase 2: fitting the classification head.

scikit-learn head: encode once, `fit`. Differentiable head: AdamW with a body group
(`body_learning_rate[1]`) and a head group (`head_learning_rate`), weight decay `l2_weight`,
CrossEntropy (BCE for multi-label), StepLR(step 5, gamma 0.5) per epoch, as setfit 1.2.0.
With the body frozen, embeddings are computed once in eval mode and the head trains on them (setfit
re-encodes every step with dropout on; caching makes the head phase seconds, deterministic, and the
same computation the pipeline's head stage does from its embeddings Parquet).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from setfit_core.args import TrainingArguments
from setfit_core.model_io.body_loading import embedding_dimension
from setfit_core.seeding import set_seed
from setfit_core.tokenization import max_length_of, tokenize
from setfit_core.training.callbacks import CallbackHandler, PhaseEvents

logger = logging.getLogger(__name__)


@contextmanager
def full_precision(model) -> Iterator[None]:
    """The head is fitted on float32 embeddings even when the model predicts in half precision
    (`inference_dtype`): that setting is for serving, and the head's fit must not depend on it."""
    saved = model.inference_dtype
    model.inference_dtype = None
    try:
        yield
    finally:
        model.inference_dtype = saved


def train_head(model, texts: list[str], y: np.ndarray, num_classes: int, args: TrainingArguments,
               callbacks: CallbackHandler | None = None):
    """Phase 2 on `model` (a `SetFitModel`): fit its head on `texts` with head-index labels `y`.

    A missing differentiable head is built here, seeded by `args.seed`, and a lazy one
    (`in_features=None`) gets the body's width; `Trainer.train_classifier` and `SetFitModel.fit` both
    come here. A differentiable head's epochs fire `callbacks`' train, epoch and log events (a scikit-learn
    head's single `fit` has none to fire); the phase's `TrainerState` is returned, None without callbacks."""
    if not model.has_differentiable_head:
        with full_precision(model):
            embeddings = model.encode(texts, batch_size=64, show_progress_bar=args.show_progress_bar, as_numpy=True)
        fit_sklearn_head(model.model_head, embeddings, y)
        return None
    if model.model_head is None:
        set_seed(args.seed)
        model.model_head = model.new_differentiable_head(num_classes)
    model.model_head.build(embedding_dimension(model.model_body))
    model.model_head.requires_grad_(True)
    events = None
    if callbacks is not None and callbacks.callbacks:
        per_epoch = math.ceil(len(y) / args.classifier_batch_size)
        events = PhaseEvents(callbacks, args, model, per_epoch * args.classifier_num_epochs, per_epoch,
                             args.classifier_num_epochs, args.classifier_batch_size)
    if args.end_to_end:
        fit_end_to_end(model, texts, y, args, events)
    else:
        model.freeze("body")
        with full_precision(model):
            embeddings = model.encode(texts, batch_size=64, show_progress_bar=args.show_progress_bar,
                                      as_numpy=False)
        fit_differentiable_head(model.model_head, embeddings, y, args, events)
        model.unfreeze("body")
    return events.state if events is not None else None


def fit_sklearn_head(head, embeddings: np.ndarray, y: np.ndarray):
    head.fit(embeddings, y)
    return head


def _targets(y: np.ndarray, device: torch.device, multitarget: bool) -> torch.Tensor:
    return torch.as_tensor(y, dtype=torch.float32 if multitarget else torch.long, device=device)


def fit_differentiable_head(head, embeddings: torch.Tensor, y: np.ndarray, args: TrainingArguments,
                            events: PhaseEvents | None = None) -> list[float]:
    """Train `head` on fixed embeddings; returns the mean loss per epoch."""
    set_seed(args.seed)
    embeddings = embeddings.to(head.device, torch.float32)
    targets = _targets(y, head.device, head.multitarget)
    optimizer = torch.optim.AdamW(
        [{"params": head.parameters(), "lr": args.head_learning_rate, "weight_decay": args.l2_weight}]
    )
    head.train()
    losses = _run_epochs(head, optimizer, len(targets), args, lambda idx: (head(embeddings[idx])[0], targets[idx]),
                         events)
    head.eval()
    return losses


def fit_end_to_end(model, texts: list[str], y: np.ndarray, args: TrainingArguments,
                   events: PhaseEvents | None = None) -> list[float]:
    """Train body and head together on texts (`end_to_end=True`)."""
    set_seed(args.seed)
    body, head = model.model_body, model.model_head
    targets = _targets(y, head.device, head.multitarget)
    max_length = max_length_of(body, args.max_length)
    optimizer = torch.optim.AdamW(
        [
            {"params": body.parameters(), "lr": args.body_classifier_learning_rate, "weight_decay": args.l2_weight},
            {"params": head.parameters(), "lr": args.head_learning_rate, "weight_decay": args.l2_weight},
        ]
    )

    def forward(idx: torch.Tensor):
        features = tokenize(body, [texts[i] for i in idx.tolist()], max_length)
        embeddings = body(features)["sentence_embedding"]
        if model.normalize_embeddings:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=1)
        return head(embeddings)[0], targets[idx.to(targets.device)]

    body.requires_grad_(True)
    body.train()
    head.train()
    losses = _run_epochs(head, optimizer, len(targets), args, forward, events)
    body.eval()
    head.eval()
    return losses


def _run_epochs(head, optimizer, n: int, args: TrainingArguments, forward, events: PhaseEvents | None = None
                ) -> list[float]:
    criterion = head.get_loss_fn()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    generator = torch.Generator().manual_seed(args.seed)
    bar = None
    if args.show_progress_bar:
        from tqdm.auto import trange

        bar = trange(args.classifier_num_epochs, desc="Head training", unit="epoch")
    losses = []
    if events is not None:
        events.train_begin()
    for epoch in range(args.classifier_num_epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, args.classifier_batch_size):
            logits, target = forward(order[start : start + args.classifier_batch_size])
            loss = criterion(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(target)
        lr = scheduler.get_last_lr()[-1]  # the head group's rate this epoch trained with
        scheduler.step()
        losses.append(total / n)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if events is not None and _epoch_events(events, epoch, args, losses[-1], lr):
            break
    if bar is not None:
        bar.close()
    if events is not None:
        events.train_end()
    logger.info("head training: %d epochs, final loss %.4f", len(losses), losses[-1] if losses else float("nan"))
    return losses


def _epoch_events(events: PhaseEvents, epoch: int, args: TrainingArguments, loss: float, lr: float) -> bool:
    """An epoch's end in phase 2: its mean loss logged (`classifier_loss`); True when a callback stops training."""
    events.advance(events.steps_per_epoch * (epoch + 1))
    events.log({"classifier_loss": loss, "learning_rate": lr})
    events.epoch_end()
    if events.control.should_training_stop:
        return True
    if epoch + 1 < args.classifier_num_epochs:
        events.epoch_begin()
    return False

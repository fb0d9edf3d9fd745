"""transformers' `TrainerCallback` protocol for both phases: the handler `Trainer(callbacks=...)` keeps, and the
events one training phase fires (`PhaseEvents`).

Each event is called as setfit 1.2.0 calls it: `callback.on_<event>(args, state, control, model=<SetFitModel>,
**kwargs)`, where `args` is setfit_core's `TrainingArguments`, `state` a `transformers.TrainerState` and `control`
a `transformers.TrainerControl`; a callback that returns a `TrainerControl` replaces the one passed on. What
transformers' `DefaultFlowCallback` does there (turning `logging_strategy`, `eval_strategy` and `save_strategy`
into `control.should_log/should_evaluate/should_save`) is the phase-1 loop's own schedule here
(`embedding_eval.py`); callbacks may add to it, and `should_training_stop` ends phase 1 after the step.

transformers' trainer module takes about two seconds to import, so it is imported only once a callback or a
tracker is in use: a run without any imports nothing from here and pays nothing per step.
"""

from __future__ import annotations

import logging
from typing import Any

from setfit_core.args import TrainingArguments

logger = logging.getLogger(__name__)


class CallbackHandler:
    """The callbacks of one `Trainer`, in order, with transformers' `add/pop/remove_callback` semantics."""

    def __init__(self, callbacks: list | tuple = ()) -> None:
        self.callbacks: list = []
        for callback in callbacks:
            self.add_callback(callback)

    def add_callback(self, callback: Any) -> None:
        """A `TrainerCallback` instance, or a class, which is instantiated without arguments."""
        instance = callback() if isinstance(callback, type) else callback
        if not _is_callback(instance):
            raise TypeError(f"callbacks must be transformers.TrainerCallback instances or classes; got {callback!r}")
        if type(instance) in [type(c) for c in self.callbacks]:
            logger.warning("adding a second %s to this Trainer's callbacks (now: %s)", type(instance).__name__,
                           ", ".join(type(c).__name__ for c in self.callbacks))
        self.callbacks.append(instance)

    def pop_callback(self, callback: Any) -> Any | None:
        """Remove and return the first callback of that class (or that instance); None when there is none."""
        for instance in self.callbacks:
            if (isinstance(instance, callback) if isinstance(callback, type) else instance is callback):
                self.callbacks.remove(instance)
                return instance
        return None

    def remove_callback(self, callback: Any) -> None:
        """Remove the first callback of that class silently, as transformers does; an instance that is not
        registered raises ValueError (transformers' `list.remove`)."""
        if isinstance(callback, type):
            self.pop_callback(callback)
        elif self.pop_callback(callback) is None:
            raise ValueError(f"{callback!r} is not one of this Trainer's callbacks")

    def call_event(self, event: str, args: TrainingArguments, state, control, **kwargs: Any):
        for callback in self.callbacks:
            result = getattr(callback, event)(args, state, control, **kwargs)
            if result is not None:  # a callback may leave `control` as it is and return nothing
                control = result
        return control


def _is_callback(instance: Any) -> bool:
    from transformers import TrainerCallback

    return isinstance(instance, TrainerCallback)


class PhaseEvents:
    """The events of one training phase: a fresh `TrainerState` and `TrainerControl` (as each `train()` of
    transformers' Trainer starts with), and the resets transformers' handler does before each event."""

    def __init__(self, handler: CallbackHandler, args: TrainingArguments, model: Any, max_steps: int,
                 steps_per_epoch: int, num_epochs: int, batch_size: int, global_step: int = 0,
                 log_history: list[dict] | None = None) -> None:
        from transformers import TrainerControl, TrainerState

        self.handler, self.args, self.model = handler, args, model
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.state = TrainerState(
            max_steps=max_steps, num_train_epochs=num_epochs, train_batch_size=batch_size,
            logging_steps=args.logging_steps, eval_steps=args.eval_steps or args.logging_steps,
            save_steps=args.save_steps, global_step=global_step, log_history=list(log_history or []),
        )
        self.state.epoch = global_step / self.steps_per_epoch
        self.control = TrainerControl()
        self._warned_epoch_stop = False

    def fire(self, event: str, **kwargs: Any):
        self.control = self.handler.call_event(event, self.args, self.state, self.control, model=self.model, **kwargs)
        return self.control

    # ---- the loop's events, with transformers' resets -------------------------------------------------
    def train_begin(self) -> None:
        self.control.should_training_stop = False
        self.fire("on_train_begin")
        self.epoch_begin()

    def epoch_begin(self) -> None:
        self.control.should_epoch_stop = False
        self.fire("on_epoch_begin")

    def step_begin(self) -> None:
        self.control.should_log = self.control.should_evaluate = self.control.should_save = False
        self.fire("on_step_begin")

    def advance(self, step: int) -> None:
        """The state after `step` steps, without an event (phase 2 fires per epoch, not per batch)."""
        self.state.global_step = step
        self.state.epoch = step / self.steps_per_epoch

    def step_end(self, step: int) -> None:
        self.advance(step)
        self.fire("on_step_end")
        if self.control.should_epoch_stop and not self._warned_epoch_stop:
            # Phase 1 trains one stream of steps, drawn across its epochs; ending an epoch early would shift
            # every later epoch's batches. With one epoch (setfit's default) it is should_training_stop.
            self._warned_epoch_stop = True
            logger.warning("control.should_epoch_stop is not honoured in phase 1; set should_training_stop instead")

    def epoch_end(self) -> None:
        self.fire("on_epoch_end")

    def at_epoch_end(self, step: int) -> bool:
        return step % self.steps_per_epoch == 0

    def log(self, logs: dict[str, float]) -> None:
        logs = {**logs, "epoch": self.state.epoch}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control.should_log = False
        self.fire("on_log", logs=logs)

    def evaluate(self, metrics: dict[str, float]) -> None:
        """`on_log` then `on_evaluate` with the metrics, then the best metric so far, as transformers orders
        them: `EarlyStoppingCallback` compares each evaluation with the best before it."""
        self.log(metrics)
        self.control.should_evaluate = False
        self.fire("on_evaluate", metrics=dict(metrics))
        self._track_best(metrics)

    def save(self, checkpoint: str | None = None) -> None:
        self.control.should_save = False
        if checkpoint is not None and self.state.best_global_step == self.state.global_step:
            self.state.best_model_checkpoint = checkpoint
        self.fire("on_save")

    def train_end(self) -> None:
        self.fire("on_train_end")

    def _track_best(self, metrics: dict[str, float]) -> None:
        name = self.args.metric_for_best_model
        if name is None:
            return
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            return
        value, best = metrics[key], self.state.best_metric
        if best is None or (value > best if self.args.greater_is_better else value < best):
            self.state.best_metric, self.state.best_global_step = value, self.state.global_step

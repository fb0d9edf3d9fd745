"""`SetFitTrainer`: the setfit 0.x API, kept so old scripts run; every call says what to write instead.

Old semantics, mapped onto the two phases: with a differentiable head, `train()` trains only the body
until `unfreeze(keep_body_frozen=...)`, after which `train(...)` trains only the head (end to end when
`keep_body_frozen=False`). With the scikit-learn head, `train()` runs both phases. (setfit 1.2.0's own
shim crashes on `freeze(); train()`; here it does what 0.x did.)

`DistillationSetFitTrainer` is 0.x's distillation trainer: its arguments map onto `DistillationTrainer`'s
`TrainingArguments`, and `train(...)` overrides apply to both phases, as 0.x applied them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from setfit_core.args import TrainingArguments
from setfit_core.distillation import DistillationTrainer
from setfit_core.trainer import Trainer


def _deprecated(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def _render_args(args: TrainingArguments) -> str:
    """`args` written as the TrainingArguments call that builds them: the per-phase fields always,
    other fields where they differ from the defaults."""
    always = ("batch_size", "num_epochs", "body_learning_rate", "head_learning_rate")
    base = TrainingArguments().to_dict()
    parts = []
    for name, value in args.to_dict().items():
        if name not in always and value == base[name]:
            continue
        if isinstance(value, list):
            value = value[0] if value[0] == value[1] else tuple(value)
        parts.append(f"loss={value}" if name == "loss" else f"{name}={value!r}")
    return f"TrainingArguments({', '.join(parts)})"


class SetFitTrainer(Trainer):
    """Deprecated: use `Trainer(model, args=TrainingArguments(...), ...)`."""

    def __init__(
        self,
        model=None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        model_init=None,
        metric: Any = "accuracy",
        metric_kwargs: dict[str, Any] | None = None,
        loss_class: Any = "CosineSimilarityLoss",
        num_iterations: int = 20,
        num_epochs: int = 1,
        learning_rate: float = 2e-5,
        batch_size: int = 16,
        seed: int = 42,
        column_mapping: dict[str, str] | None = None,
        use_amp: bool = False,
        warmup_proportion: float = 0.1,
        distance_metric: str | Callable[..., Any] = "cosine_distance",
        margin: float = 0.25,
        samples_per_label: int = 2,
    ) -> None:
        args = TrainingArguments(
            num_iterations=num_iterations,
            num_epochs=num_epochs,
            body_learning_rate=learning_rate,
            head_learning_rate=learning_rate,  # 0.x: one learning rate, also the head's unless train() overrides it
            batch_size=batch_size,
            seed=seed,
            loss=loss_class,
            use_amp=use_amp,
            warmup_proportion=warmup_proportion,
            distance_metric=distance_metric,
            margin=margin,
            samples_per_label=samples_per_label,
        )
        _deprecated(
            "SetFitTrainer is deprecated; write Trainer(model=model, args="
            f"{_render_args(args)}, train_dataset=..., eval_dataset=..., metric=...) and call trainer.train()"
        )
        super().__init__(model, args, train_dataset, eval_dataset, model_init, metric, metric_kwargs,
                         column_mapping=column_mapping)
        # 0.x state: with a differentiable head, train() trains the body until unfreeze() is called.
        self._head_phase_next = False
        self._end_to_end = False

    def freeze(self) -> None:
        """0.x: freeze the head so that the next `train()` trains only the body."""
        _deprecated(
            "SetFitTrainer.freeze() is deprecated: Trainer.train() freezes and unfreezes by itself "
            "(phase 1 trains the body, phase 2 the head); just call trainer.train()"
        )
        self._head_phase_next = False

    def unfreeze(self, keep_body_frozen: bool = False) -> None:
        """0.x: unfreeze the head (and the body unless `keep_body_frozen`) for a head-phase `train()`."""
        _deprecated(
            f"SetFitTrainer.unfreeze(keep_body_frozen={keep_body_frozen}) is deprecated: set "
            f"TrainingArguments(end_to_end={not keep_body_frozen}) and call trainer.train()"
        )
        self._head_phase_next = True
        self._end_to_end = not keep_body_frozen

    def train(
        self,
        num_epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        body_learning_rate: float | None = None,
        l2_weight: float | None = None,
        max_length: int | None = None,
        show_progress_bar: bool | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(f"SetFitTrainer.train() got unexpected arguments {sorted(unsupported)}")
        head_phase = self.model.has_differentiable_head and self._head_phase_next
        self.args = self._merge(head_phase, num_epochs, batch_size, learning_rate, body_learning_rate,
                                l2_weight, max_length, show_progress_bar)
        _deprecated(
            f"SetFitTrainer.train(...) is deprecated; the equivalent is Trainer(model, args={_render_args(self.args)}, "
            "...).train(), which runs both phases"
        )
        if not self.model.has_differentiable_head:
            super().train()
        elif head_phase:
            self.train_classifier()
        else:
            self.train_embeddings()

    def _merge(self, head_phase: bool, num_epochs, batch_size, learning_rate, body_learning_rate, l2_weight,
               max_length, show_progress_bar) -> TrainingArguments:
        """Fold 0.x per-call overrides into the phase they applied to."""
        args = self.args
        phase = 1 if head_phase else 0

        def set_phase(current: tuple, value: Any) -> tuple:
            return current if value is None else tuple(value if i == phase else v for i, v in enumerate(current))

        changes: dict[str, Any] = {
            "num_epochs": set_phase(args.num_epochs, num_epochs),
            "batch_size": set_phase(args.batch_size, batch_size),
        }
        if head_phase:
            changes["end_to_end"] = self._end_to_end
            if learning_rate is not None:
                changes["head_learning_rate"] = learning_rate
            changes["body_learning_rate"] = set_phase(args.body_learning_rate, body_learning_rate)
        else:
            changes["body_learning_rate"] = set_phase(args.body_learning_rate, learning_rate)
        overrides = (("l2_weight", l2_weight), ("max_length", max_length), ("show_progress_bar", show_progress_bar))
        for name, value in overrides:
            if value is not None:
                changes[name] = value
        return args.replace(**changes)


class DistillationSetFitTrainer(DistillationTrainer):
    """Deprecated: use `DistillationTrainer(teacher, student, args=TrainingArguments(...), ...)`."""

    def __init__(
        self,
        teacher_model,
        student_model=None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        model_init=None,
        metric: Any = "accuracy",
        loss_class: Any = "CosineSimilarityLoss",
        num_iterations: int = 20,
        num_epochs: int = 1,
        learning_rate: float = 2e-5,
        batch_size: int = 16,
        seed: int = 42,
        column_mapping: dict[str, str] | None = None,
        use_amp: bool = False,
        warmup_proportion: float = 0.1,
    ) -> None:
        args = TrainingArguments(
            num_iterations=num_iterations,
            num_epochs=num_epochs,
            body_learning_rate=learning_rate,
            head_learning_rate=learning_rate,
            batch_size=batch_size,
            seed=seed,
            loss=loss_class,
            use_amp=use_amp,
            warmup_proportion=warmup_proportion,
        )
        _deprecated(
            "DistillationSetFitTrainer is deprecated; write DistillationTrainer(teacher_model=teacher, "
            f"student_model=student, args={_render_args(args)}, train_dataset=..., eval_dataset=...) and call "
            "trainer.train()"
        )
        super().__init__(teacher_model, student_model, args, train_dataset, eval_dataset, model_init, metric,
                         column_mapping=column_mapping)

    def train(
        self,
        num_epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        body_learning_rate: float | None = None,
        l2_weight: float | None = None,
        max_length: int | None = None,
        show_progress_bar: bool | None = None,
        **unsupported: Any,
    ) -> None:
        """0.x: both phases, with these values for this and later calls (epochs and batch size in both phases,
        `learning_rate` for the body's pairs and the head, `body_learning_rate` for the body in phase 2)."""
        if unsupported:
            raise TypeError(f"DistillationSetFitTrainer.train() got unexpected arguments {sorted(unsupported)}")
        args = self.args
        changes: dict[str, Any] = {}
        if num_epochs is not None:
            changes["num_epochs"] = (num_epochs, num_epochs)
        if batch_size is not None:
            changes["batch_size"] = (batch_size, batch_size)
        if learning_rate is not None:
            changes["head_learning_rate"] = learning_rate
        body_rates = (learning_rate or args.body_learning_rate[0], body_learning_rate or args.body_learning_rate[1])
        if body_rates != tuple(args.body_learning_rate):
            changes["body_learning_rate"] = body_rates
        for name, value in (("l2_weight", l2_weight), ("max_length", max_length),
                            ("show_progress_bar", show_progress_bar)):
            if value is not None:
                changes[name] = value
        self.args = args.replace(**changes) if changes else args
        _deprecated(
            f"DistillationSetFitTrainer.train(...) is deprecated; the equivalent is DistillationTrainer(teacher, "
            f"student, args={_render_args(self.args)}, ...).train()"
        )
        super().train()

"""`TrainingArguments`: setfit 1.x's argument object, validated at construction.

Tuple fields take `(embedding_phase, classifier_phase)`; a scalar fills both phases. Unlike setfit
1.2.0, an int learning rate is expanded like a float, `l2_weight=0` stays 0, and `seed` drives every
random choice (pair sampling included).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from setfit_core.losses import LOSSES, resolve_loss
from setfit_core.losses.distances import canonical_distance
from setfit_core.trackers import check_report_to

SAMPLING_STRATEGIES = ("oversampling", "undersampling", "unique", "label_balanced")
PAIR_SAMPLING_STRATEGIES = SAMPLING_STRATEGIES[:3]
INTERVAL_STRATEGIES = ("no", "steps", "epoch")
PRESETS = (None, "fast")
# The fast preset's batch: about this many texts, spread evenly over the labels (2 per label at least), and
# its SupCon temperature; chosen on a grid over 2 to 64 classes (docs/performance.md, "The fast preset").
FAST_BATCH_TEXTS = 256
FAST_TEMPERATURE = 0.05
# setfit passes these to the triplet losses; names instead of callables so args hash and round-trip.
# sentence-transformers' functions (setfit's form) are accepted and become these names when built.
DISTANCE_METRICS = ("cosine_distance", "euclidean", "manhattan")
# Deprecated spellings accepted at construction (setfit and transformers still take them) -> the field they set.
# They are never stored: after __post_init__ they are None, so they are left out of to_dict() and stage keys.
DEPRECATED_ALIASES = {"evaluation_strategy": "eval_strategy"}


def _err(name: str, constraint: str, value: Any) -> ValueError:
    return ValueError(f"{name!r} must be {constraint}; got {value!r}")


def _pair(name: str, value: Any, check: Any, constraint: str) -> tuple:
    """Expand a scalar to (value, value) and check both entries."""
    given = value
    if isinstance(value, list):  # JSON has no tuples: accept lists from config files
        value = tuple(value)
    if not isinstance(value, tuple):
        value = (value, value)
    if len(value) != 2:
        raise _err(name, f"a single value or a (embedding_phase, classifier_phase) pair of {constraint}", given)
    for item in value:
        if not check(item):
            raise _err(name, f"{constraint} (or a pair of them)", given)
    return value


def _is_pos_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x > 0


def _is_pos_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0


@dataclass
class TrainingArguments:
    """Arguments of both SetFit phases (field names and defaults of setfit 1.2.0)."""

    output_dir: str = "checkpoints"
    batch_size: int | tuple[int, int] = (16, 2)
    num_epochs: int | tuple[int, int] = (1, 16)
    max_steps: int = -1
    sampling_strategy: str = "oversampling"
    num_iterations: int | None = None
    body_learning_rate: float | tuple[float, float] = (2e-5, 1e-5)
    head_learning_rate: float = 1e-2
    loss: Any = "CosineSimilarityLoss"
    distance_metric: str | Callable[..., Any] = "cosine_distance"
    margin: float = 0.25
    end_to_end: bool = False
    use_amp: bool = False
    warmup_proportion: float = 0.1
    l2_weight: float | None = 0.01
    max_length: int | None = None
    samples_per_label: int = 2
    show_progress_bar: bool = True
    seed: int = 42
    report_to: str | list[str] | None = "none"
    run_name: str | None = None
    logging_dir: str | None = None
    logging_strategy: str = "steps"
    logging_first_step: bool = True
    logging_steps: int = 50
    eval_strategy: str = "no"
    eval_steps: int | None = None
    eval_delay: int = 0
    eval_max_steps: int = -1
    save_strategy: str = "steps"
    save_steps: int = 500
    save_total_limit: int | None = 1
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = "embedding_loss"
    greater_is_better: bool = False
    preset: str | None = None
    loss_params: dict[str, Any] | None = None
    # Not in setfit: phase 1 recomputes each layer's activations in the backward pass instead of keeping
    # them (engine/gradient_checkpointing.py): memory per step hardly grows with its texts; ~1.5x the time on CPU.
    gradient_checkpointing: bool = False
    # Deprecated alias of eval_strategy, as in setfit 1.2.0 (which warns and copies it over).
    evaluation_strategy: str | None = field(default=None, repr=False, compare=False)
    _loss_class: type = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._apply_deprecated_aliases()
        if self.preset not in PRESETS:
            raise _err("preset", f"one of {list(PRESETS)}", self.preset)
        if self.preset == "fast":
            self._apply_fast_preset()
        self.batch_size = _pair("batch_size", self.batch_size, _is_pos_int, "positive ints")
        self.num_epochs = _pair("num_epochs", self.num_epochs, _is_pos_int, "positive ints")
        self.body_learning_rate = tuple(
            float(x) for x in _pair("body_learning_rate", self.body_learning_rate, _is_pos_number, "positive numbers")
        )
        self._validate_scalars()
        self._validate_choices()
        self._loss_class = resolve_loss(self.loss)
        self.loss = self._loss_class
        if self.sampling_strategy == "label_balanced" and getattr(self._loss_class, "kind", None) != "group":
            raise ValueError(
                f"'sampling_strategy' 'label_balanced' makes in-batch batches for a group loss "
                f"(BatchCosineSimilarityLoss, SupConLoss, a batch triplet loss); "
                f"got loss {self.loss_name!r}. Use one of {list(PAIR_SAMPLING_STRATEGIES)} with a pair loss"
            )
        if self.eval_steps is not None and self.eval_strategy == "no":
            self.eval_strategy = "steps"  # setfit/transformers: eval_steps implies step-wise evaluation
        if self.eval_strategy == "steps" and not self.eval_steps:
            self.eval_steps = self.logging_steps

    def _apply_deprecated_aliases(self) -> None:
        for alias, name in DEPRECATED_ALIASES.items():
            value = getattr(self, alias)
            if value is None:
                continue
            value = getattr(value, "value", value)  # transformers' IntervalStrategy enum
            # stacklevel 4: this method, __post_init__, the generated __init__, then the caller's line.
            warnings.warn(f"{alias!r} is deprecated; use {name}={value!r} instead", DeprecationWarning, stacklevel=4)
            current = getattr(self, name)
            current = getattr(current, "value", current)
            default = next(f.default for f in dataclasses.fields(self) if f.name == name)
            if current != default and current != value:
                raise ValueError(f"{alias!r} (deprecated) is {value!r} but {name!r} is {current!r}; pass only "
                                 f"{name}={value!r}")
            setattr(self, name, value)
            setattr(self, alias, None)

    def _apply_fast_preset(self) -> None:
        """`preset="fast"`: supervised contrastive learning (SupCon, temperature 0.05) on label-balanced
        batches, each holding every label, for a number of steps that follows from the data (training/batches.py).
        Fields left at their setfit defaults take the preset's values; fields the caller set keep theirs."""
        setfit_defaults = {"loss": "CosineSimilarityLoss", "batch_size": (16, 2), "body_learning_rate": (2e-5, 1e-5),
                           "loss_params": None, "sampling_strategy": "oversampling"}
        fast = {"loss": "SupConLoss", "batch_size": (FAST_BATCH_TEXTS, 2), "body_learning_rate": (5e-5, 1e-5),
                "loss_params": {"temperature": FAST_TEMPERATURE, "base_temperature": FAST_TEMPERATURE},
                "sampling_strategy": "label_balanced"}
        for name, default in setfit_defaults.items():
            value = getattr(self, name)
            value = tuple(value) if isinstance(value, list) else value
            if value == default or (name == "loss" and getattr(value, "__name__", None) == default):
                setattr(self, name, fast[name])
        if getattr(self.loss, "__name__", self.loss) != "SupConLoss" and self.loss_params == fast["loss_params"]:
            self.loss_params = None  # the temperature is SupCon's: a loss the caller chose gets its own defaults
        # The preset is shorthand: once expanded, the fields say everything, so to_dict()/from_dict()
        # round-trip exactly and re-applying can never change a value the caller chose.
        self.preset = None

    def _validate_scalars(self) -> None:
        if not _is_pos_number(self.head_learning_rate):
            raise _err("head_learning_rate", "a positive number", self.head_learning_rate)
        self.head_learning_rate = float(self.head_learning_rate)
        if not (isinstance(self.warmup_proportion, numbers.Real) and 0.0 <= self.warmup_proportion <= 1.0):
            raise _err("warmup_proportion", "a number in [0, 1]", self.warmup_proportion)
        if self.l2_weight is None:
            self.l2_weight = 0.01  # setfit: None means "use the default"
        if not (isinstance(self.l2_weight, numbers.Real) and self.l2_weight >= 0):
            raise _err("l2_weight", "a number >= 0 (0 disables weight decay)", self.l2_weight)
        if self.num_iterations is not None and not _is_pos_int(self.num_iterations):
            raise _err("num_iterations", "None or a positive int", self.num_iterations)
        for name in ("max_steps", "eval_max_steps"):
            value = getattr(self, name)
            if not (isinstance(value, int) and (value == -1 or value > 0)):
                raise _err(name, "-1 (no limit) or a positive int", value)
        if self.max_length is not None and not _is_pos_int(self.max_length):
            raise _err("max_length", "None (the body's max_seq_length) or a positive int", self.max_length)
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**32):
            raise _err("seed", "an int in [0, 2**32)", self.seed)
        if not (isinstance(self.margin, numbers.Real) and not isinstance(self.margin, bool)):
            raise _err("margin", "a number", self.margin)
        for name in ("logging_steps", "save_steps"):
            if not _is_pos_int(getattr(self, name)):
                raise _err(name, "a positive int", getattr(self, name))
        if self.loss_params is not None and not isinstance(self.loss_params, dict):
            raise _err("loss_params", "None or a dict of the loss's constructor arguments", self.loss_params)
        for name in ("end_to_end", "use_amp", "show_progress_bar", "load_best_model_at_end", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise _err(name, "True or False", getattr(self, name))

    def _validate_choices(self) -> None:
        if callable(self.distance_metric):  # setfit's form: sentence-transformers' function becomes its name
            self.distance_metric = canonical_distance(self.distance_metric)
        choices = {
            "sampling_strategy": SAMPLING_STRATEGIES,
            "distance_metric": tuple(DISTANCE_METRICS),
            "logging_strategy": INTERVAL_STRATEGIES,
            "eval_strategy": INTERVAL_STRATEGIES,
            "save_strategy": INTERVAL_STRATEGIES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if hasattr(value, "value"):  # enums from transformers (IntervalStrategy) become their string
                value = value.value
                setattr(self, name, value)
            if value not in allowed:
                raise _err(name, f"one of {list(allowed)}", value)
        if isinstance(self.report_to, tuple):
            self.report_to = list(self.report_to)
        check_report_to(self.report_to)  # names only: whether a tracker is installed is checked where it runs

    # setfit's per-phase names
    @property
    def embedding_batch_size(self) -> int:
        return self.batch_size[0]

    @property
    def classifier_batch_size(self) -> int:
        return self.batch_size[1]

    @property
    def embedding_num_epochs(self) -> int:
        return self.num_epochs[0]

    @property
    def classifier_num_epochs(self) -> int:
        return self.num_epochs[1]

    @property
    def body_embedding_learning_rate(self) -> float:
        return self.body_learning_rate[0]

    @property
    def body_classifier_learning_rate(self) -> float:
        return self.body_learning_rate[1]

    @property
    def loss_name(self) -> str:
        return self._loss_class.__name__

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: tuples become lists, the loss becomes its name."""
        out = {}
        for f in dataclasses.fields(self):
            if not f.init or f.name in DEPRECATED_ALIASES:
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["loss"] = self.loss_name
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_json_string(self) -> str:
        """`to_dict()` as indented JSON, as setfit's (and transformers') `to_json_string`, which transformers'
        callbacks call (e.g. `TensorBoardCallback`). setfit writes each value's `str()`, its only way to put a
        class and a function into JSON; these values are plain already, so they keep their JSON types."""
        return json.dumps(self.to_dict(), indent=2)

    def to_sanitized_dict(self) -> dict[str, Any]:
        """As setfit's: the fields plus `train_batch_size` and `eval_batch_size` (both the embedding batch size),
        every value that is not a bool, int, float or str as its `str()`: for TensorBoard's hparams."""
        values = {name: getattr(self, name) for name in field_names()}
        values.update(loss=self.loss_name, train_batch_size=self.embedding_batch_size,
                      eval_batch_size=self.embedding_batch_size)
        return {key: value if type(value) in (bool, int, float, str) else str(value) for key, value in values.items()}

    @classmethod
    def from_dict(cls, arguments: dict[str, Any], ignore_extra: bool = False) -> TrainingArguments:
        """Build from plain values (e.g. parsed JSON/YAML). An unknown key names the closest field, unless
        `ignore_extra=True` (setfit's switch) drops keys that are not fields."""
        if not isinstance(arguments, dict):
            raise TypeError(f"TrainingArguments.from_dict expects a dict; got {type(arguments).__name__}")
        if ignore_extra:
            known = set(field_names()) | set(DEPRECATED_ALIASES)
            arguments = {k: v for k, v in arguments.items() if k in known}
        check_field_names(arguments)
        return cls(**arguments)

    def copy(self) -> TrainingArguments:
        """A shallow copy, as setfit's `copy()`."""
        return copy.copy(self)

    def update(self, arguments: dict[str, Any], ignore_extra: bool = False) -> TrainingArguments:
        """A new instance with `arguments` applied over this one's values (this one is unchanged), as setfit's
        `update()`; the loss stays the class itself, so a custom loss survives."""
        if not isinstance(arguments, dict):
            raise TypeError(f"TrainingArguments.update expects a dict; got {type(arguments).__name__}")
        current = {name: getattr(self, name) for name in field_names()}
        return TrainingArguments.from_dict({**current, **arguments}, ignore_extra=ignore_extra)

    def replace(self, **changes: Any) -> TrainingArguments:
        check_field_names(changes)
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    """The fields an instance holds (deprecated aliases, always None once built, left out)."""
    return [f.name for f in dataclasses.fields(TrainingArguments) if f.init and f.name not in DEPRECATED_ALIASES]


def check_field_names(values: dict[str, Any]) -> None:
    valid = field_names()
    for name in values:
        if name not in valid and name not in DEPRECATED_ALIASES:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{name!r} is not a TrainingArguments field{hint} Valid fields: {', '.join(valid)}")


__all__ = ["TrainingArguments", "LOSSES", "SAMPLING_STRATEGIES", "check_field_names", "field_names"]

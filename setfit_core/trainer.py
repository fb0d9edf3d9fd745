"""`Trainer`: validates everything up front, then `train()` = phase 1 (body) + phase 2 (head)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from setfit_core.args import TrainingArguments
from setfit_core.data import LabeledTexts, LabelEncoder, load_labeled
from setfit_core.data_quality import DataWarning, split_warnings, train_warnings
from setfit_core.differentiable_head import SetFitHead
from setfit_core.engine.options import EngineOptions
from setfit_core.metrics import check_metric, compute_metric
from setfit_core.model_classes import head_indices, trained_classes
from setfit_core.modeling import SetFitModel, build_sklearn_head
from setfit_core.probe import ProbeComparison, compare, probe_predictions
from setfit_core.tokenization import max_length_of, warn_if_truncated
from setfit_core.trackers import resolve_report_to
from setfit_core.training import hyperparameter_search as hp_search
from setfit_core.training.callbacks import CallbackHandler
from setfit_core.training.classifier_phase import train_head
from setfit_core.training.embedding_phase import BodyTrainingResult, ProgressFn, train_body
from setfit_core.training.fit_head import as_list

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedSplit:
    """A validated split: texts, raw labels, and head-index labels."""

    data: LabeledTexts
    ids: np.ndarray

    @property
    def texts(self) -> list[str]:
        return self.data.texts


class Trainer:
    """Train a `SetFitModel` in two phases.

    >>> trainer = Trainer(model, TrainingArguments(num_iterations=20), train_dataset=train)  # doctest: +SKIP
    >>> trainer.train(); trainer.evaluate(test)                                                # doctest: +SKIP
    """

    def __init__(
        self,
        model: SetFitModel | None = None,
        args: TrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        model_init: Callable[..., SetFitModel] | None = None,
        metric: str | Callable = "accuracy",
        metric_kwargs: dict[str, Any] | None = None,
        callbacks: list | None = None,
        column_mapping: Mapping[str, str] | None = None,
        engine: EngineOptions | None = None,
    ) -> None:
        """`engine` (not in setfit) chooses phase 1's speed-ups; the default uses every one that applies.

        `callbacks`: transformers `TrainerCallback`s (instances or classes), e.g. `EarlyStoppingCallback`; after
        them, one tracker per `args.report_to` (`MLflowTracker`, `TensorBoardTracker`).

        Data-quality findings (blank texts, classes with one example, ...) are logged as warnings and kept
        in `data_warnings`; `setfit_core.check_data_quality(..., strict=True)` raises them instead.

        With an `eval_dataset`, phase 1 first scores the frozen-probe baseline on it (the untouched body with
        the model's LogisticRegression head: `probe_metrics`), and `evaluate()` warns when the trained model
        scores below it (`probe_comparison`).

        `model_init`: a function returning a fresh `SetFitModel`, taking no argument or one (a trial's
        hyperparameters dict; None here), for `hyperparameter_search` and `apply_hyperparameters`.
        """
        if model is None and model_init is None:
            raise ValueError("Trainer needs a model: pass model=SetFitModel.from_pretrained(...) or model_init=")
        self.model_init = model_init
        self.model = model if model is not None else hp_search.call_model_init(model_init, None)
        if not isinstance(self.model, SetFitModel):
            raise TypeError(f"'model' must be a setfit_core.SetFitModel; got {type(self.model).__name__}")
        if self.model.backend != "torch":
            raise ValueError("the model was loaded with backend='onnx', which predicts only; load it with "
                             "SetFitModel.from_pretrained(..., backend='torch') to train it")
        self.args = args if args is not None else TrainingArguments()
        if not isinstance(self.args, TrainingArguments):
            raise TypeError(f"'args' must be a setfit_core.TrainingArguments; got {type(self.args).__name__}")
        if engine is not None and not isinstance(engine, EngineOptions):
            raise TypeError(f"'engine' must be a setfit_core.EngineOptions; got {type(engine).__name__}")
        self.engine = engine or EngineOptions()
        check_metric(metric)
        self.metric, self.metric_kwargs, self.column_mapping = metric, metric_kwargs, column_mapping
        self.encoder: LabelEncoder | None = None
        self._labels_from_model = False  # True when no training data gave the encoder (evaluation only)
        self.data_warnings: list[DataWarning] = []  # filled as the datasets are checked, below
        self.train_split = self._load_train(train_dataset) if train_dataset is not None else None
        self.eval_split = self.encode_split(eval_dataset, "eval_dataset") if eval_dataset is not None else None
        if self.train_split is not None:  # the model card's labels, examples and widget (model_card.py)
            self.model.model_card_data.record_train_data(self.train_split.texts, self.train_split.ids,
                                                         self.encoder.labels)
            self.model.model_card_data.set_widget_examples((self.eval_split or self.train_split).texts)
        self.body_result: BodyTrainingResult | None = None
        self.probe_metrics: dict[str, float] | None = None
        self.probe_comparison: ProbeComparison | None = None
        self.state = None  # the last phase's transformers TrainerState, when callbacks ran
        self.callback_handler = CallbackHandler(callbacks or [])
        trackers = resolve_report_to(self.args.report_to)  # a missing package fails here, before any training
        if trackers:
            from setfit_core.training.trackers import build_trackers

            for tracker in build_trackers(trackers):
                self.callback_handler.add_callback(tracker)
        if self.callback_handler.callbacks:
            from transformers import TrainerControl, TrainerState

            self.callback_handler.call_event("on_init_end", self.args, TrainerState(), TrainerControl(),
                                             model=self.model)

    # ---- callbacks, as setfit's Trainer -------------------------------------------------------------
    def add_callback(self, callback: Any) -> None:
        """Add a transformers `TrainerCallback` (an instance, or a class to instantiate)."""
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback: Any) -> Any | None:
        """Remove and return the first callback of that class (or that instance); None if there is none."""
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback: Any) -> None:
        """Remove the first callback of that class (or that instance)."""
        self.callback_handler.remove_callback(callback)

    def _trackers(self) -> list:
        if not self.callback_handler.callbacks:
            return []
        from setfit_core.training.trackers import Tracker  # transformers is loaded already: callbacks exist

        return [c for c in self.callback_handler.callbacks if isinstance(c, Tracker)]

    # ---- data -----------------------------------------------------------------------------------
    def _load_train(self, dataset: Any, name: str = "train_dataset") -> EncodedSplit:
        mapping = self.column_mapping if name == "train_dataset" else None  # lists have their own names
        data = load_labeled(dataset, mapping, name)
        if data.multi_label != self.model.multi_label:
            raise ValueError(
                "train_dataset has multi-label rows but the model has no multi_target_strategy; load it with "
                "multi_target_strategy='one-vs-rest' (or 'multi-output'/'classifier-chain')"
                if data.multi_label
                else f"the model has multi_target_strategy={self.model.multi_target_strategy!r} but train_dataset "
                "has single labels; give multi-hot label lists or drop multi_target_strategy"
            )
        self.encoder = LabelEncoder.fit(data, self.model.labels, name)
        self._labels_from_model = False
        self._check_head(self.encoder.num_classes)
        split = EncodedSplit(data, self.encoder.encode(data.labels, name))
        self._warn_long_texts(data, name)  # after every error: warnings only for data that will train
        self._note(train_warnings(data, name, self.args))
        return split

    def _note(self, found: list[DataWarning]) -> None:
        for warning in found:
            logger.warning("%s", warning.message)
        self.data_warnings.extend(found)

    def _warn_long_texts(self, data: LabeledTexts, name: str) -> None:
        body = self.model.model_body
        supported = getattr(body, "max_seq_length", None)
        limit = max_length_of(body, self.args.max_length) or supported
        what = "the body's max_seq_length" if limit == supported else "max_length"
        warn_if_truncated(body.tokenizer, data.texts, limit, name, what)

    def _check_head(self, num_classes: int) -> None:
        head = self.model.model_head
        if self.model.has_differentiable_head and isinstance(head, SetFitHead) and head.out_features != num_classes:
            raise ValueError(
                f"the differentiable head has out_features={head.out_features} but the training data has "
                f"{num_classes} classes; set head_params={{'out_features': {num_classes}}}"
            )
        if self.model.has_differentiable_head and head is None:
            self.model.new_differentiable_head(num_classes)  # raises if head_params disagree, before training

    def encode_split(self, dataset: Any, name: str) -> EncodedSplit:
        if self.encoder is None:
            self.encoder, self._labels_from_model = self._model_encoder(name), True
        data = load_labeled(dataset, self.column_mapping, name)
        if self.train_split is None and data.multi_label != self.model.multi_label:
            raise ValueError(f"{name} and the model must both be single-label or both multi-label "
                             f"(multi_target_strategy={self.model.multi_target_strategy!r})")
        if self.train_split is not None and data.multi_label != self.train_split.data.multi_label:
            raise ValueError(f"{name} and train_dataset must both be single-label or both multi-label")
        split = EncodedSplit(data, self.encoder.encode(data.labels, name))
        self._warn_long_texts(data, name)
        self._note(split_warnings(data, name))
        return split

    def _model_encoder(self, name: str) -> LabelEncoder:
        """No training data (`Trainer(model, eval_dataset=...)`, as setfit allows): the trained model's labels."""
        try:
            labels, num_classes = trained_classes(self.model, "model")
        except ValueError as exc:
            raise ValueError(
                f"{name} is checked against the training labels, but the Trainer has no train_dataset and the "
                "model no trained head to take them from; pass train_dataset=, or a trained model"
            ) from exc
        return LabelEncoder(labels, num_classes)

    # ---- training -------------------------------------------------------------------------------
    def train(self, args: TrainingArguments | None = None, progress: ProgressFn | None = None, trial: Any = None,
              **kwargs: Any) -> None:
        """Phase 1 (contrastive body training), then phase 2 (head); freezing is handled here.

        `trial` (setfit's): a hyperparameters dict or an optuna trial (through the search's `hp_space`), applied
        with `apply_hyperparameters` first, so the model is `model_init`'s fresh one for them. Other keyword
        arguments are ignored with a `DeprecationWarning`, as setfit 1.2.0 does."""
        if kwargs:
            warn_ignored_train_kwargs(type(self).__name__, kwargs)
        if trial:
            self.apply_hyperparameters(hp_search.trial_params(self, trial))
        args = args or self.args
        try:
            self.train_embeddings(args=args, progress=progress)
            self.train_classifier(args=args)
        except BaseException:
            for tracker in self._trackers():  # the tracker run ends as failed, not left running
                tracker.close(failed=True)
            raise

    def _require_train(self) -> EncodedSplit:
        if self.train_split is None:
            raise ValueError("Trainer has no train_dataset; pass train_dataset= when creating it")
        return self.train_split

    def train_embeddings(
        self,
        x_train: list[str] | None = None,
        y_train: list[Any] | None = None,
        x_eval: list[str] | None = None,
        y_eval: list[Any] | None = None,
        args: TrainingArguments | None = None,
        progress: ProgressFn | None = None,
    ) -> None:
        """Phase 1 on the `train_dataset` (and `eval_dataset`), or, as setfit, on lists: `x_train` texts with
        their `y_train` labels, which become the Trainer's training data, and `x_eval`/`y_eval` for phase 1's
        evaluation. `train_embeddings(args, progress)` (a `TrainingArguments` first) still works."""
        if isinstance(x_train, TrainingArguments):  # the earlier form, train_embeddings(args[, progress])
            x_train, y_train, args, progress = None, None, x_train, progress or y_train
        args = args or self.args
        train_lists = lists_as_dataset(x_train, y_train, "train_embeddings", "train")
        eval_lists = lists_as_dataset(x_eval, y_eval, "train_embeddings", "eval")  # both checked before loading
        split = self._lists_as_train(train_lists)
        eval_split = self.eval_split if eval_lists is None else self.encode_split(eval_lists, "eval lists")
        if eval_split is not None and self.probe_metrics is None:
            self.probe_metrics = self._score_probe(split, eval_split)
            self.model.model_card_data.set_probe_results(self.probe_metrics, "eval")
        self.model.model_card_data.set_hyperparameters(args, self.model.head_params)
        self.model.freeze("head")
        self.model.unfreeze("body")
        self.body_result = train_body(
            self.model.model_body,
            split.texts,
            split.ids,
            args,
            eval_texts=eval_split.texts if eval_split else None,
            eval_label_ids=eval_split.ids if eval_split else None,
            progress=progress,
            engine=self.engine,
            callbacks=self.callback_handler,
            model=self.model,
        )
        self.state = self.body_result.state or self.state
        self.model.model_card_data.set_train_log(self.body_result.log, args.load_best_model_at_end)

    def train_classifier(
        self, x_train: list[str] | None = None, y_train: list[Any] | None = None, args: TrainingArguments | None = None
    ) -> None:
        """Phase 2 on the `train_dataset`, or, as setfit, on `x_train` texts with their `y_train` labels (which
        become the Trainer's training data). `train_classifier(args)` still works."""
        if isinstance(x_train, TrainingArguments):  # the earlier form, train_classifier(args)
            x_train, args = None, x_train
        args = args or self.args
        split = self._lists_as_train(lists_as_dataset(x_train, y_train, "train_classifier", "train"))
        if self.encoder.labels is not None and self.model.labels is None:
            self.model.labels = list(self.encoder.labels)
        state = train_head(self.model, split.texts, split.ids, self.encoder.num_classes, args,
                           callbacks=self.callback_handler)
        self.state = state or self.state
        for tracker in self._trackers():  # phase 2 ends the run: the trained model goes in, then it closes
            tracker.close(self.model)

    def _lists_as_train(self, lists: dict[str, list] | None) -> EncodedSplit:
        """setfit's list form: the lists replace the training data; without them, the train_dataset."""
        if lists is None:
            return self._require_train()
        self.train_split = self._load_train(lists, "train lists")
        if self.eval_split is not None:  # encoded with the previous labels: again with these
            self.eval_split = EncodedSplit(self.eval_split.data,
                                           self.encoder.encode(self.eval_split.data.labels, "eval_dataset"))
        return self.train_split

    def _score_probe(self, split: EncodedSplit, eval_split: EncodedSplit) -> dict[str, float]:
        """The frozen-probe baseline on the eval split, while the body is still untouched."""
        head = self.model.model_head
        if isinstance(head, BaseEstimator):
            probe_head = clone(head)  # the model's own head settings, unfitted
        else:  # a differentiable head: setfit's default head stands in
            probe_head = build_sklearn_head({}, self.model.multi_target_strategy)
        encode = lambda texts: self.model.encode(texts, batch_size=64, show_progress_bar=False, as_numpy=True)  # noqa: E731
        predicted = probe_predictions(encode, probe_head, split.texts, split.ids, {"eval": eval_split.texts})
        return compute_metric(self.metric, predicted["eval"], eval_split.ids, self.metric_kwargs)

    # ---- hyperparameter search, as setfit's Trainer (training/hyperparameter_search.py) ------------
    def hyperparameter_search(
        self,
        hp_space: Callable[[Any], dict[str, Any]] | None = None,
        compute_objective: Callable[[dict[str, float]], float] | None = None,
        n_trials: int = 10,
        direction: str = "maximize",
        backend: str | None = "optuna",
        hp_name: Callable[[Any], str] | None = None,
        **kwargs: Any,
    ) -> hp_search.BestRun:
        """Search hyperparameters with optuna: each trial applies `hp_space(trial)` (default: setfit's space)
        with `apply_hyperparameters`, trains, and scores `compute_objective(trainer.evaluate())` (default: the
        sum of the metrics). Needs `model_init` and an `eval_dataset`; `kwargs` go to `optuna.create_study`
        (`sampler=`, `storage=`, ...), besides `timeout`. `hp_name(trial)` names each trial's run (`run_name`).

        Unlike setfit, a trial whose phase-1 configuration and starting body were trained before (one that
        changes only head parameters) reuses that trained body and its embeddings instead of retraining.
        Returns `BestRun(run_id, objective, hyperparameters, backend=<the optuna study>)`; `trainer.args` are
        as before the search, `trainer.model` the last trial's."""
        return hp_search.hyperparameter_search(self, hp_space, compute_objective, n_trials, direction, backend,
                                               hp_name, **kwargs)

    def apply_hyperparameters(self, params: dict[str, Any], final_model: bool = False) -> None:
        """setfit's: the `TrainingArguments` fields among `params` update `self.args`, and `model_init(params)`
        builds `self.model`; `final_model=True` then drops `model_init`, for a last `train()` on the best run."""
        hp_search.apply_hyperparameters(self, params, final_model)

    def call_model_init(self, params: dict[str, Any] | None = None) -> SetFitModel:
        """setfit's: `model_init()` or `model_init(params)`, by how many arguments it takes."""
        if self.model_init is None:
            raise ValueError("Trainer has no model_init; pass Trainer(model_init=...) to build models from params")
        return hp_search.call_model_init(self.model_init, params)

    # ---- setfit's deprecated shims -------------------------------------------------------------
    def freeze(self, component: str | None = None) -> None:
        """Deprecated, as in setfit: `SetFitModel.freeze`. `train()` freezes what each phase must not train."""
        warnings.warn(f"{type(self).__name__}.freeze is deprecated; call trainer.model.freeze() directly",
                      DeprecationWarning, stacklevel=2)
        self.model.freeze(component)

    def unfreeze(self, component: str | None = None, keep_body_frozen: bool | None = None) -> None:
        """Deprecated, as in setfit: `SetFitModel.unfreeze`."""
        warnings.warn(f"{type(self).__name__}.unfreeze is deprecated; call trainer.model.unfreeze() directly",
                      DeprecationWarning, stacklevel=2)
        self.model.unfreeze(component, keep_body_frozen=keep_body_frozen)

    # ---- the Hub ----------------------------------------------------------------------------------
    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """As setfit's: `SetFitModel.push_to_hub` of the trained model, committed as "Add SetFit model" unless
        `commit_message=` says otherwise; `repo_id` must name its organisation or user ("org/name")."""
        if not isinstance(repo_id, str) or "/" not in repo_id:
            raise ValueError(f"'repo_id' must be a full repository id with its organisation or user, such as "
                             f"'my-org/my-model'; got {repo_id!r}")
        kwargs.setdefault("commit_message", "Add SetFit model")
        return self.model.push_to_hub(repo_id, **kwargs)

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, dataset: Any = None, metric_key_prefix: str | None = None) -> dict[str, float]:
        """Metric on `dataset` (default: the eval_dataset); names computed locally with scikit-learn.

        The keys are the metric's, as setfit returns them; `metric_key_prefix` names them only in what callbacks
        are logged (`<prefix>_<name>`; `eval_<name>` without one).

        On the eval_dataset after training, a model below the frozen-probe baseline is logged as a warning
        with both numbers (`probe_comparison` holds them)."""
        split = self.encode_split(dataset, "dataset") if dataset is not None else self.eval_split
        if split is None:
            raise ValueError("no dataset to evaluate: pass evaluate(dataset) or Trainer(eval_dataset=...)")
        result = compute_metric(self.metric, self._predicted_ids(split.texts), split.ids, self.metric_kwargs)
        if dataset is None and self.probe_metrics is not None:
            self.probe_comparison = compare("eval_dataset", self.metric, result, self.probe_metrics)
            if self.probe_comparison is not None and self.probe_comparison.below:
                logger.warning("%s", self.probe_comparison.message())
        card_split = metric_key_prefix or ("eval" if dataset is None else "test")  # as setfit's card names them
        self.model.model_card_data.post_training_eval_results({f"{card_split}_{k}": v for k, v in result.items()})
        self._log_evaluation(result, metric_key_prefix)
        return result

    def _predicted_ids(self, texts: list[str]) -> np.ndarray:
        if self._labels_from_model:  # a head fitted by setfit may predict label values, not head indices
            return head_indices(self.model, None, self.encoder, texts, name="the model's predictions")
        return np.asarray(self.model.predict(texts, as_numpy=True, use_labels=False, show_progress_bar=False))

    def _log_evaluation(self, result: dict[str, float], prefix: str | None) -> None:
        """`on_log` with the metrics (`eval_<name>` unless prefixed), as transformers' `evaluate` logs them; no
        `on_evaluate`, which phase 1's early stopping reads for its own eval loss."""
        if not self.callback_handler.callbacks:
            return
        from transformers import TrainerControl, TrainerState

        logs = {f"{prefix or 'eval'}_{k}": v for k, v in result.items()}
        state = self.state if self.state is not None else TrainerState()
        closed = [t for t in self._trackers() if not t.run_open]
        self.callback_handler.call_event("on_log", self.args, state, TrainerControl(), model=self.model, logs=logs)
        for tracker in closed:  # a run reopened only to add these metrics is closed again
            tracker.close()


def lists_as_dataset(texts: Any, labels: Any, method: str, kind: str) -> dict[str, list] | None:
    """setfit's `x_<kind>`/`y_<kind>` lists as a dict dataset, or None when neither is given."""
    if texts is None and labels is None:
        return None
    if texts is None or labels is None:
        given, missing = (f"x_{kind}", f"y_{kind}") if labels is None else (f"y_{kind}", f"x_{kind}")
        raise ValueError(f"{method}() got {given} but no {missing}; pass the texts and their labels as two lists "
                         f"({method}(x_train, y_train, ...)), or neither to use the Trainer's datasets")
    return {"text": as_list(texts, f"x_{kind}"), "label": as_list(labels, f"y_{kind}")}


def warn_ignored_train_kwargs(trainer: str, kwargs: dict[str, Any]) -> None:
    """setfit 1.2.0's `train(**kwargs)`: a DeprecationWarning, and the arguments are not used."""
    warnings.warn(
        f"`{trainer}.train` does not accept keyword arguments anymore; {sorted(kwargs)} are ignored (as in "
        f"setfit 1.2.0). Put them in TrainingArguments and pass args= to {trainer}(...) or {trainer}.train()",
        DeprecationWarning,
        stacklevel=3,
    )

"""`Trainer.hyperparameter_search`: setfit 1.2.0's optuna search, with each trained body reused.

A trial is what it is in setfit: `hp_space(trial)` gives a dict of hyperparameters; `apply_hyperparameters`
copies the keys that are `TrainingArguments` fields into the trainer's arguments and hands the whole dict to
`model_init` for a fresh model; the trial trains it, `trainer.evaluate()` scores it, and
`compute_objective(metrics)` (default: the sum of the metrics, transformers' rule) is the trial's value.

setfit then retrains the body every trial. Here a trial's body is keyed by what phase 1 computes from: the
pipeline's pairs and body stage configs (`setfit_core.pipeline.stage_config`, the same body/head split the
pipeline's stage keys use) over the trial's arguments, with a fingerprint of the body `model_init` returned
(its modules and weights) in place of the base model's identity. A trial whose key was trained before,
because it changes only the head (`head_params` through `model_init`; `head_learning_rate`, or the
classifier-phase batch size, epochs or body rate of a frozen-body differentiable head), restores that trained
body instead of training it, and the head trains and is scored on the train and eval embeddings computed once
per body. With `end_to_end=True` phase 2 changes the body, so such a trial restores the phase-1 body and
encodes anew.

Trained bodies are kept as state dicts in a temporary directory for the search's lifetime; embeddings in
memory. `study.trials[i].user_attrs` say what each trial did: `body_key`, `body_trained` and `encoded_texts`
(the texts it encoded for phase 2 and evaluation: 0 when the body's embeddings were reused).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import numbers
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from setfit_core.seeding import set_seed

if TYPE_CHECKING:
    from setfit_core.args import TrainingArguments
    from setfit_core.modeling import SetFitModel
    from setfit_core.trainer import Trainer
    from setfit_core.training.embedding_phase import BodyTrainingResult

logger = logging.getLogger(__name__)

SWEEP_EXTRA = "pip install 'setfit-pipeline[sweep]'"
DIRECTIONS = ("maximize", "minimize")


class BestRun(NamedTuple):
    """The best trial of `Trainer.hyperparameter_search`, as setfit's `BestRun`.

    Attributes:
        run_id: the optuna trial's number, as a string.
        objective: the trial's objective value.
        hyperparameters: the dict `hp_space` returned for the trial, ready for
            `trainer.apply_hyperparameters(best_run.hyperparameters, final_model=True)`.
        backend: the `optuna.Study`, with every trial (`study.trials`, each with its `user_attrs`).
    """

    run_id: str
    objective: float
    hyperparameters: dict[str, Any]
    backend: Any = None


def default_hp_space_optuna(trial: Any) -> dict[str, Any]:
    """setfit 1.2.0's default search space, its ranges and choices.

    setfit names the learning rate `learning_rate`, which its `TrainingArguments` has no field for: there it
    reaches only `model_init` and tunes nothing. Here it is `body_learning_rate`, the field it was meant for."""
    return {
        "body_learning_rate": trial.suggest_float("body_learning_rate", 1e-6, 1e-4, log=True),
        "num_epochs": trial.suggest_int("num_epochs", 1, 5),
        "num_iterations": trial.suggest_categorical("num_iterations", [5, 10, 20]),
        "seed": trial.suggest_int("seed", 1, 40),
        "batch_size": trial.suggest_categorical("batch_size", [4, 8, 16, 32, 64]),
    }


def default_compute_objective(metrics: Mapping[str, float]) -> float:
    """transformers' default objective: the sum of the metrics (`eval_loss` alone when there are no others),
    run times and speeds left out. For `evaluate()`'s `{"accuracy": 0.9}` that is the accuracy."""
    metrics = dict(metrics)
    loss = metrics.pop("eval_loss", None)
    metrics.pop("epoch", None)
    values = [v for k, v in metrics.items() if not k.endswith(("_runtime", "_per_second"))]
    return loss if not values else sum(values)


# ---- model_init and apply_hyperparameters ---------------------------------------------------------------
def call_model_init(model_init: Callable[..., SetFitModel], params: dict[str, Any] | None) -> SetFitModel:
    """`model_init()` or `model_init(params)`, by how many arguments it takes, as setfit calls it (`params` is
    None when the `Trainer` is made)."""
    from setfit_core.modeling import SetFitModel

    count = _number_of_arguments(model_init)
    if count == 0:
        model = model_init()
    elif count == 1:
        model = model_init(params)
    else:
        raise ValueError(f"model_init must take no argument, or one (the trial's hyperparameters dict); "
                         f"{getattr(model_init, '__name__', model_init)!r} takes {count}")
    if not isinstance(model, SetFitModel):
        raise TypeError(f"model_init must return a setfit_core.SetFitModel; got {type(model).__name__}")
    return model


def _number_of_arguments(func: Callable) -> int:
    try:
        return len(inspect.signature(func).parameters)  # a functools.partial's signature leaves out bound ones
    except (TypeError, ValueError):  # a builtin or C callable without a signature: called without arguments
        return 0


def apply_hyperparameters(trainer: Trainer, params: Mapping[str, Any], final_model: bool = False) -> None:
    """setfit's `Trainer.apply_hyperparameters`: the keys that are `TrainingArguments` fields update
    `trainer.args` (`args.update(params, ignore_extra=True)`); the seed is set; `model_init(params)` (the
    whole dict) builds `trainer.model`. `final_model=True` then drops `model_init`, as setfit does."""
    if not isinstance(params, Mapping):
        raise TypeError(f"hyperparameters must be a dict of name -> value; got {type(params).__name__}")
    if trainer.model_init is None:
        raise ValueError("apply_hyperparameters builds a fresh model for the hyperparameters with model_init, "
                         "but this Trainer has none: create it with Trainer(model_init=..., ...)")
    params = dict(params)
    trainer.args = trainer.args.update(params, ignore_extra=True)
    set_seed(trainer.args.seed)  # as setfit: model_init runs seeded
    trainer.model = call_model_init(trainer.model_init, params)
    trainer.body_result = None
    if trainer.encoder is not None:  # the new model against the train data's classes, before any training
        trainer._check_head(trainer.encoder.num_classes)
    if final_model:
        trainer.model_init = None


def trial_params(trainer: Trainer, trial: Any) -> dict[str, Any]:
    """A trial's hyperparameters: a dict as it is, an optuna trial through the search's `hp_space`
    (setfit's default when no search set one)."""
    if isinstance(trial, Mapping):
        return dict(trial)
    space = getattr(trainer, "hp_space", None) or default_hp_space_optuna
    return _check_params(space(trial))


def _check_params(params: Any) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise TypeError(f"hp_space must return a dict of hyperparameter name -> value; got {params!r}")
    return dict(params)


# ---- the search -------------------------------------------------------------------------------------------
def hyperparameter_search(
    trainer: Trainer,
    hp_space: Callable[[Any], dict[str, Any]] | None = None,
    compute_objective: Callable[[dict[str, float]], float] | None = None,
    n_trials: int | None = 10,
    direction: str = "maximize",
    backend: Any = "optuna",
    hp_name: Callable[[Any], str] | None = None,
    **kwargs: Any,
) -> BestRun:
    """`Trainer.hyperparameter_search` (its docstring says what each argument does)."""
    name = getattr(backend, "value", backend) if backend is not None else "optuna"
    if name != "optuna":
        raise ValueError(f"backend={backend!r} is not supported: hyperparameter_search runs on optuna only "
                         "(backend='optuna', the default)")
    if trainer.model_init is None:
        raise ValueError("hyperparameter_search builds a new model for every trial: create the Trainer with "
                         "model_init=<a function returning a SetFitModel> instead of model=")
    if trainer.eval_split is None:
        raise ValueError("hyperparameter_search scores each trial with compute_objective(trainer.evaluate()), which "
                         "needs an eval_dataset: create the Trainer with eval_dataset=...")
    if isinstance(direction, str) and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}; got {direction!r}")
    if n_trials is not None and not (isinstance(n_trials, int) and not isinstance(n_trials, bool) and n_trials > 0):
        raise ValueError(f"n_trials must be a positive int (or None with timeout=); got {n_trials!r}")
    timeout = kwargs.pop("timeout", None)
    n_jobs = kwargs.pop("n_jobs", 1)
    if n_jobs != 1:
        raise ValueError(f"n_jobs={n_jobs!r}: the trials share one Trainer and run one at a time; leave n_jobs at 1")
    optuna = import_optuna()
    space = hp_space or default_hp_space_optuna
    objective_of = compute_objective or default_compute_objective
    trainer.hp_space = space  # as setfit: train(trial=<optuna trial>) reads it
    study = optuna.create_study(direction=direction, **kwargs)
    base_args = trainer.args
    applied: dict[int, dict[str, Any]] = {}

    with BodyReuse() as reuse:
        def objective(trial: Any) -> float:
            params = _check_params(space(trial))
            applied[trial.number] = params
            trainer.args = base_args if hp_name is None else base_args.replace(run_name=str(hp_name(trial)))
            apply_hyperparameters(trainer, params)  # every trial starts from the search's own arguments
            record = reuse.run_trial(trainer, trainer.args)
            value = objective_of(record.metrics)
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise ValueError(f"compute_objective must return a number; it returned {value!r} for the metrics "
                                 f"{record.metrics}")
            for key, attr in (("body_key", record.body_key), ("body_trained", record.body_trained),
                              ("encoded_texts", record.encoded_texts)):
                trial.set_user_attr(key, attr)
            logger.info("trial %d: %s, body %s (%s), objective %s", trial.number, params, record.body_key,
                        "trained" if record.body_trained else "reused", value)
            return float(value)

        try:
            study.optimize(objective, n_trials=n_trials, timeout=timeout)
        finally:
            trainer.args = base_args
    best = study.best_trial
    return BestRun(str(best.number), best.value, applied.get(best.number, dict(best.params)), study)


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(f"hyperparameter_search needs optuna: install the sweep extra, `{SWEEP_EXTRA}` "
                          "(or `pip install optuna`)") from None
    return optuna


# ---- reusing trained bodies and their embeddings ----------------------------------------------------------
@dataclass
class TrialRecord:
    metrics: dict[str, float]
    body_key: str
    body_trained: bool
    encoded_texts: int


@dataclass
class _TrainedBody:
    path: Path
    result: BodyTrainingResult | None
    state: Any


class BodyReuse:
    """The trained bodies of one search by body key (state dicts in a temporary directory), and the
    embeddings each computed (in memory), so no body trains twice and none encodes a text twice."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="setfit-hpsearch-")
        self.bodies: dict[str, _TrainedBody] = {}
        self.embeddings: dict[tuple, torch.Tensor] = {}

    def __enter__(self) -> BodyReuse:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bodies.clear()
        self.embeddings.clear()
        self._dir.cleanup()

    def run_trial(self, trainer: Trainer, args: TrainingArguments) -> TrialRecord:
        """Phase 1 (or the trained body restored), phase 2 and `evaluate()`, as `Trainer.train()` then
        `evaluate()` run them; trackers get one run per trial."""
        model = trainer.model
        key = body_key(model, args, trainer.eval_split is not None)
        _open_tracker_runs(trainer, args)
        try:
            trained = key not in self.bodies
            if trained:
                trainer.train_embeddings(args)
                self._store(key, trainer)
            else:
                self._restore(key, trainer)
            # end_to_end trains the body on in phase 2: its embeddings after that are the trial's own.
            reuse = not (model.has_differentiable_head and args.end_to_end)
            with remembered_embeddings(model, self.embeddings if reuse else {}, key) as counter:
                trainer.train_classifier(args)
                metrics = trainer.evaluate()
        except BaseException:
            for tracker in trainer._trackers():
                tracker.close(failed=True)
            raise
        return TrialRecord(metrics, key, trained, counter.texts)

    def _store(self, key: str, trainer: Trainer) -> None:
        path = Path(self._dir.name) / f"{key}.pt"
        torch.save({k: v.detach().cpu() for k, v in trainer.model.model_body.state_dict().items()}, path)
        self.bodies[key] = _TrainedBody(path, trainer.body_result, trainer.state)

    def _restore(self, key: str, trainer: Trainer) -> None:
        stored, model = self.bodies[key], trainer.model
        model.model_body.load_state_dict(torch.load(stored.path, map_location=model.device, weights_only=True))
        model.model_body.eval()
        model.freeze("head")
        model.unfreeze("body")
        trainer.body_result, trainer.state = stored.result, stored.state
        logger.info("phase 1: reusing the body trained for key %s", key)


def body_key(model: SetFitModel, args: TrainingArguments, has_eval: bool) -> str:
    """What phase 1 computes from: the pipeline's pairs and body configs of `args`, and the body's
    fingerprint as its identity. Head settings and classifier-phase fields are in neither config."""
    from setfit_core.artifacts import canonical_json
    from setfit_core.pipeline.stage_config import ARGS_BY_STAGE, body_config, body_uses_eval, pairs_config

    identity = {"fingerprint": body_fingerprint(model.model_body)}
    try:
        config: dict[str, Any] = {"pairs": pairs_config(args),
                                  "body": body_config(args, identity, body_uses_eval(args, has_eval))}
    except ValueError:  # a loss the pipeline cannot name (a custom class): every phase-1 field, by its repr
        fields = dict.fromkeys((*ARGS_BY_STAGE["pairs"], *ARGS_BY_STAGE["body"]))
        values = {name: getattr(args, name) for name in fields}
        config = {"model": identity, "has_eval": has_eval,
                  "args": {k: repr(v[0] if isinstance(v, tuple) else v) for k, v in values.items()}}
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:16]


def body_fingerprint(body: Any) -> str:
    """sha256 over the body's modules (their repr: architecture, pooling, normalisation), its max_seq_length,
    its tokenizer's name and size, and every tensor of its state dict: equal only for the same starting body."""
    digest = hashlib.sha256(f"{body!r}|{getattr(body, 'max_seq_length', None)}".encode())
    tokenizer = getattr(body, "tokenizer", None)
    if tokenizer is not None:
        size = len(tokenizer) if hasattr(tokenizer, "__len__") else None
        digest.update(f"{type(tokenizer).__name__}|{getattr(tokenizer, 'name_or_path', '')}|{size}".encode())
    for name, tensor in body.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()


@dataclass
class _Counter:
    texts: int = 0


@contextmanager
def remembered_embeddings(model: SetFitModel, memo: dict[tuple, torch.Tensor], key: str) -> Iterator[_Counter]:
    """Within the block, `model.encode` returns the embeddings `memo` holds for the same body key, texts and
    normalisation, and computes (and keeps) only those it lacks; the counter says how many texts it encoded."""
    original = model.encode  # the bound method; the instance attribute set below shadows it
    counter = _Counter()

    def encode(inputs: Any, batch_size: int | None = None, show_progress_bar: bool | None = None,
               as_numpy: bool | None = None) -> Any:
        single = isinstance(inputs, str)
        texts = [inputs] if single else list(inputs)
        entry = (key, model.normalize_embeddings, _texts_digest(texts))
        embeddings = memo.get(entry)
        if embeddings is None:
            embeddings = original(texts, batch_size, show_progress_bar, as_numpy=False).detach().float().cpu()
            memo[entry] = embeddings
            counter.texts += len(texts)
        if as_numpy is None:
            as_numpy = not model.has_differentiable_head
        out = embeddings.numpy().copy() if as_numpy else embeddings.to(model.device, copy=True)
        return out[0] if single else out

    model.encode = encode
    try:
        yield counter
    finally:
        vars(model).pop("encode", None)


def _texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def _open_tracker_runs(trainer: Trainer, args: TrainingArguments) -> None:
    """One tracker run per trial, opened before phase 1, so that a trial with a reused body (no phase-1 events)
    gets its own run too instead of adding its metrics to the previous trial's."""
    trackers = trainer._trackers()
    if not trackers:
        return
    from setfit_core.training.trackers import run_params

    for tracker in trackers:
        tracker.close()
        tracker.begin(args, run_params(args, trainer.model))


"""`Trainer.hyperparameter_search` with setfit 1.2.0's documented call shapes (the "Hyperparameter Optimization"
how-to), and the body reuse: a trial that changes only the head restores the trained body and its embeddings."""

from __future__ import annotations

import sys
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")
from transformers import TrainerCallback  # noqa: E402

from setfit_core import BestRun, SetFitModel, Trainer, TrainingArguments  # noqa: E402
from setfit_core.training.trackers import Tracker  # noqa: E402

EVAL = {"text": ["good film", "bad film", "great movie", "awful movie", "i love this film", "i hate this movie",
                 "very nice plot", "very poor plot"],
        "label": [1, 0, 1, 0, 1, 0, 1, 0]}


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def base_args() -> TrainingArguments:
    return TrainingArguments(num_iterations=1, show_progress_bar=False, save_strategy="no", seed=0)


class Phase1Counter(TrainerCallback):
    """Phase-1 steps (only phase 1 fires step events) and the run names phase 1 started with."""

    def __init__(self) -> None:
        self.steps, self.run_names = 0, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.run_names.append(args.run_name)

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


def spied_model_init(tiny_model_dir: str, built: list, **extra: Any):
    """setfit's documented `model_init(params)`, building the LogisticRegression head from the params; each
    model's body counts its forward passes (`built[i]["forwards"]`), as a user's model_init can."""

    def model_init(params: dict[str, Any] | None) -> SetFitModel:
        params = params or {}
        head_params = {"max_iter": params.get("max_iter", 100), "solver": params.get("solver", "liblinear")}
        if "C" in params:
            head_params["C"] = params["C"]
        model = SetFitModel.from_pretrained(tiny_model_dir, head_params=head_params, **extra)
        record = {"params": params, "forwards": 0, "model": model}
        model.model_body.register_forward_hook(lambda *_: record.__setitem__("forwards", record["forwards"] + 1))
        built.append(record)
        return model

    return model_init


def test_setfit_documented_search_then_final_training(tiny_model_dir, tiny_data, base_args):
    def hp_space(trial):  # the how-to's space, narrowed so the tiny run stays fast
        return {
            "body_learning_rate": trial.suggest_float("body_learning_rate", 1e-6, 1e-3, log=True),
            "num_epochs": trial.suggest_int("num_epochs", 1, 2),
            "batch_size": trial.suggest_categorical("batch_size", [16, 32]),
            "seed": trial.suggest_int("seed", 1, 40),
            "max_iter": trial.suggest_int("max_iter", 50, 300),
            "solver": trial.suggest_categorical("solver", ["newton-cg", "lbfgs", "liblinear"]),
        }

    built: list = []
    trainer = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL,
                      model_init=spied_model_init(tiny_model_dir, built))
    best_run = trainer.hyperparameter_search(direction="maximize", hp_space=hp_space, n_trials=3,
                                             sampler=optuna.samplers.TPESampler(seed=0))

    assert isinstance(best_run, BestRun) and best_run._fields == ("run_id", "objective", "hyperparameters", "backend")
    study = best_run.backend
    assert isinstance(study, optuna.Study) and len(study.trials) == 3
    assert best_run.objective == max(t.value for t in study.trials)
    best = study.trials[int(best_run.run_id)]
    assert best.value == best_run.objective
    assert best_run.hyperparameters == best.params  # every key is suggested under its own name
    assert [r["params"] for r in built[1:]] == [dict(t.params) for t in study.trials]  # model_init got each dict
    assert trainer.args == base_args  # the search's arguments are restored

    trainer.apply_hyperparameters(best_run.hyperparameters, final_model=True)
    assert trainer.model_init is None
    assert trainer.args.seed == best.params["seed"] and trainer.args.batch_size == (best.params["batch_size"],) * 2
    assert trainer.model.model_head.max_iter == best.params["max_iter"]
    assert trainer.model.model_head.solver == best.params["solver"]
    trainer.train()
    assert trainer.evaluate()["accuracy"] == pytest.approx(best_run.objective)  # the best trial, retrained


def test_head_only_trials_reuse_the_trained_body_and_its_embeddings(tiny_model_dir, tiny_data, base_args):
    def hp_space(trial):
        return {"seed": trial.suggest_categorical("seed", [1, 2]), "C": trial.suggest_categorical("C", [0.01, 10.0])}

    built: list = []
    counter = Phase1Counter()
    trainer = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL, callbacks=[counter],
                      model_init=spied_model_init(tiny_model_dir, built))
    sampler = optuna.samplers.GridSampler({"seed": [1, 2], "C": [0.01, 10.0]}, seed=0)
    best_run = trainer.hyperparameter_search(hp_space=hp_space, n_trials=4, sampler=sampler,
                                             hp_name=lambda trial: f"trial-{trial.number}")
    trials = best_run.backend.trials
    steps_per_body = trainer.body_result.steps  # the last trial's body, trained or restored: the same run

    # Two phase-1 configurations (the seeds): two bodies trained, whatever order the grid ran in.
    assert sum(t.user_attrs["body_trained"] for t in trials) == 2
    assert counter.steps == 2 * steps_per_body
    keys = {t.params["seed"]: set() for t in trials}
    for t in trials:
        keys[t.params["seed"]].add(t.user_attrs["body_key"])
    assert all(len(k) == 1 for k in keys.values()) and keys[1] != keys[2]
    assert counter.run_names == [f"trial-{t.number}" for t in trials if t.user_attrs["body_trained"]]

    # Embeddings once per body: the trial that trained it encoded the train and eval texts, the other none.
    texts = len(tiny_data["text"]) + len(EVAL["text"])
    for t in trials:
        assert t.user_attrs["encoded_texts"] == (texts if t.user_attrs["body_trained"] else 0)
    for t, record in zip(trials, built[1:], strict=True):
        assert record["params"]["C"] == t.params["C"]
        if not t.user_attrs["body_trained"]:
            assert record["forwards"] == 0  # model_init's fresh body never ran: restored, embeddings reused
            assert record["model"].model_head.C == t.params["C"]

    # A reused body scores what a full training with the same hyperparameters scores.
    reused = next(t for t in trials if not t.user_attrs["body_trained"])
    fresh = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL,
                    model_init=spied_model_init(tiny_model_dir, []))
    fresh.train(trial=dict(reused.params))
    assert fresh.evaluate()["accuracy"] == pytest.approx(reused.value)
    assert best_run.objective == max(t.value for t in trials)


def test_differentiable_head_trials_reuse_the_body(tiny_model_dir, tiny_data, base_args):
    """Classifier-phase fields (head rate, head epochs) of a frozen-body differentiable head are head-only."""

    def hp_space(trial):
        return {"head_learning_rate": trial.suggest_float("head_learning_rate", 1e-3, 1e-1, log=True),
                "num_epochs": (1, trial.suggest_int("head_epochs", 1, 3))}

    counter = Phase1Counter()
    trainer = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL, callbacks=[counter],
                      model_init=lambda: SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True))
    best_run = trainer.hyperparameter_search(hp_space=hp_space, n_trials=3,
                                             sampler=optuna.samplers.RandomSampler(seed=0))
    trials = best_run.backend.trials
    assert [t.user_attrs["body_trained"] for t in trials] == [True, False, False]
    assert len({t.user_attrs["body_key"] for t in trials}) == 1
    assert counter.steps == trainer.body_result.steps > 0
    assert [t.user_attrs["encoded_texts"] for t in trials][1:] == [0, 0]
    assert best_run.hyperparameters["num_epochs"][1] == best_run.backend.best_trial.params["head_epochs"]


class RecordingTracker(Tracker):
    """A tracker that keeps its runs in memory: [{"run_name": ..., "metrics": {...}}, ...]."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict] = []

    def start(self, args, params):
        self.runs.append({"run_name": args.run_name, "metrics": {}})

    def log_metrics(self, metrics, step):
        self.runs[-1]["metrics"].update(metrics)

    def finish(self, failed):
        self.runs[-1]["failed"] = failed


def test_every_trial_reports_its_own_tracker_run(tiny_model_dir, tiny_data, base_args):
    """A trial with a reused body fires no phase-1 events, yet gets a run of its own for its metrics."""
    tracker = RecordingTracker()
    trainer = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL, callbacks=[tracker],
                      model_init=spied_model_init(tiny_model_dir, []))
    best_run = trainer.hyperparameter_search(hp_space=lambda trial: {"C": trial.suggest_float("C", 0.01, 10.0)},
                                             n_trials=2, hp_name=lambda trial: f"c-{trial.number}")
    trials = best_run.backend.trials
    assert [t.user_attrs["body_trained"] for t in trials] == [True, False]
    assert [run["run_name"] for run in tracker.runs] == ["c-0", "c-1"]
    assert [run["metrics"]["eval_accuracy"] for run in tracker.runs] == [t.value for t in trials]
    assert "train_loss" in tracker.runs[0]["metrics"] and "train_loss" not in tracker.runs[1]["metrics"]
    assert not any(run["failed"] for run in tracker.runs)


def test_model_init_without_arguments_and_the_default_space(tiny_model_dir, tiny_data):
    calls = []

    def model_init():
        calls.append(1)
        return SetFitModel.from_pretrained(tiny_model_dir)

    args = TrainingArguments(max_steps=2, show_progress_bar=False, save_strategy="no")
    trainer = Trainer(args=args, train_dataset=tiny_data, eval_dataset=EVAL, model_init=model_init)
    best_run = trainer.hyperparameter_search(n_trials=1, sampler=optuna.samplers.RandomSampler(seed=0))
    assert len(calls) == 2  # the Trainer's model, then the trial's
    assert set(best_run.hyperparameters) == {"body_learning_rate", "num_epochs", "num_iterations", "seed",
                                             "batch_size"}
    assert best_run.objective == trainer.evaluate()["accuracy"]  # the last trial's model is the trainer's


def test_train_with_a_trial_applies_its_hyperparameters(tiny_model_dir, tiny_data, base_args):
    built: list = []
    trainer = Trainer(args=base_args, train_dataset=tiny_data, model_init=spied_model_init(tiny_model_dir, built))
    assert built[0]["params"] == {}  # setfit passes None at construction; the documented model_init copes
    trainer.train(trial={"max_iter": 7, "seed": 5, "num_epochs": 1, "solver": "lbfgs"})
    assert built[-1]["params"] == {"max_iter": 7, "seed": 5, "num_epochs": 1, "solver": "lbfgs"}
    assert trainer.model is built[-1]["model"] and trainer.model.model_head.max_iter == 7
    assert trainer.args.seed == 5 and trainer.args.num_epochs == (1, 1)
    assert trainer.body_result is not None and len(trainer.model.predict(["good movie"])) == 1


def test_call_model_init_passes_params_to_a_one_argument_model_init(tiny_model_dir, tiny_data, base_args):
    built: list = []
    trainer = Trainer(args=base_args, train_dataset=tiny_data, model_init=spied_model_init(tiny_model_dir, built))
    model = trainer.call_model_init({"max_iter": 9})
    assert model is built[-1]["model"] and built[-1]["params"] == {"max_iter": 9}
    with pytest.raises(ValueError, match=r"Trainer has no model_init; pass Trainer\(model_init=...\)"):
        Trainer(SetFitModel.from_pretrained(tiny_model_dir), args=base_args, train_dataset=tiny_data).call_model_init()


def test_errors(tiny_model_dir, tiny_data, base_args, monkeypatch):
    model_init = lambda: SetFitModel.from_pretrained(tiny_model_dir)  # noqa: E731
    trainer = Trainer(args=base_args, train_dataset=tiny_data, eval_dataset=EVAL, model_init=model_init)
    with pytest.raises(ValueError, match="backend='ray' is not supported.*optuna"):
        trainer.hyperparameter_search(backend="ray")
    with pytest.raises(ValueError, match="compute_objective must return a number; it returned None"):
        trainer.hyperparameter_search(compute_objective=lambda metrics: None, n_trials=1,
                                      hp_space=lambda trial: {"max_steps": 1})
    with pytest.raises(ValueError, match="n_jobs"):
        trainer.hyperparameter_search(n_jobs=2)
    with pytest.raises(ValueError, match="direction must be one of"):
        trainer.hyperparameter_search(direction="up")
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install 'setfit-pipeline\[sweep\]'"):
        trainer.hyperparameter_search()
    monkeypatch.undo()

    no_eval = Trainer(args=base_args, train_dataset=tiny_data, model_init=model_init)
    with pytest.raises(ValueError, match="needs an eval_dataset"):
        no_eval.hyperparameter_search()
    no_init = Trainer(SetFitModel.from_pretrained(tiny_model_dir), base_args, train_dataset=tiny_data,
                      eval_dataset=EVAL)
    with pytest.raises(ValueError, match="model_init"):
        no_init.hyperparameter_search()
    with pytest.raises(ValueError, match="model_init"):
        no_init.apply_hyperparameters({"seed": 1})
    with pytest.raises(ValueError, match="no argument, or one"):
        Trainer(args=base_args, model_init=lambda a, b: None)
    with pytest.raises(TypeError, match="must return a setfit_core.SetFitModel"):
        Trainer(args=base_args, model_init=lambda: None)

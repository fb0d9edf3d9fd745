"""The same small scripts run against setfit 1.2.0 and setfit_core, offline, on the tiny model (issue 24).

Each test compares what both libraries return for the same call. Where setfit_core differs on purpose, the test
asserts the difference that docs/coming-from-setfit.md lists. Skipped when setfit is not installed (it comes
with the `bench` extra). Training runs once per library and case (`trained`), on a one-step phase 1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

setfit = pytest.importorskip("setfit", reason="setfit 1.2.0 is not installed (pip install 'setfit-pipeline[bench]')")
datasets = pytest.importorskip("datasets")

import setfit_core  # noqa: E402
from setfit_core import SetFitModel, TrainingArguments, UnsafeHeadError  # noqa: E402

LIBRARIES = {"setfit": setfit, "setfit_core": setfit_core}
POS = ["good movie", "great film", "nice plot", "i love it", "very good actor", "so happy", "fine film", "great"]
NEG = ["bad movie", "awful film", "poor plot", "i hate it", "very bad actor", "so sad", "terrible film", "awful"]
TEXTS = ["good film", "awful movie", "i love this film", "very poor plot"]
LABELS = ["negative", "positive"]
# transformers events that setfit's phase 1 (a transformers Trainer) fires and setfit_core's own loop does not.
OPTIMIZER_EVENTS = {"on_pre_optimizer_step", "on_optimizer_step"}


def int_rows() -> dict[str, list]:
    return {"text": POS + NEG, "label": [1] * 8 + [0] * 8}


def args_for(lib, tmp_path, **changes):
    """One phase-1 step, nothing written, no tracker: setfit's default `report_to` is every installed tracker."""
    values = dict(num_iterations=1, num_epochs=(1, 2), seed=0, save_strategy="no", show_progress_bar=False,
                  output_dir=str(tmp_path / "checkpoints"), report_to="none", **changes)
    return lib.TrainingArguments(**values)


def make_recorder():
    """A TrainerCallback that records the name of every event it is called with."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.events: set[str] = set()

    for name in [n for n in vars(TrainerCallback) if n.startswith("on_")]:
        setattr(Recorder, name, lambda self, args, state, control, _name=name, **kw: self.events.add(_name))
    return Recorder()


CASES = {
    # int labels 0/1 named by `labels=`, scikit-learn head, a recording callback
    "ids+labels": dict(model={"labels": LABELS}, data=int_rows, record=True),
    # string labels in the data, scikit-learn head
    "strings": dict(model={}, data=lambda: {"text": POS + NEG, "label": ["positive"] * 8 + ["negative"] * 8}),
    # int labels named by `labels=`, differentiable head
    "differentiable": dict(model={"labels": LABELS, "use_differentiable_head": True,
                                  "head_params": {"out_features": 2}}, data=int_rows),
}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory, single_torch_thread):
    """`trained(library, case)` -> (model, trainer, recorder or None), each trained once per module."""
    done = {}

    def get(library: str, case: str):
        if (library, case) not in done:
            lib, spec = LIBRARIES[library], CASES[case]
            model = lib.SetFitModel.from_pretrained(tiny_model_dir, device="cpu", **spec["model"])
            recorder = make_recorder() if spec.get("record") else None
            trainer = lib.Trainer(model=model, args=args_for(lib, tmp_path_factory.mktemp(library)),
                                  train_dataset=datasets.Dataset.from_dict(spec["data"]()),
                                  callbacks=[recorder] if recorder else None)
            trainer.train()
            done[library, case] = model, trainer, recorder
        return done[library, case]

    return get


def shape_of(value) -> tuple:
    """What a caller sees: the container type, the element kind, the shape (or length)."""
    if isinstance(value, torch.Tensor):
        return "tensor", str(value.dtype), tuple(value.shape)
    if isinstance(value, np.ndarray):
        return "ndarray", value.dtype.kind, value.shape
    if isinstance(value, list):
        return "list", type(value[0]).__name__, len(value)
    return type(value).__name__, None, None


# ---- TrainingArguments -----------------------------------------------------------------------------------

PHASE_FIELDS = ("batch_size", "num_epochs", "body_learning_rate", "embedding_batch_size", "classifier_batch_size",
                "embedding_num_epochs", "classifier_num_epochs", "body_embedding_learning_rate",
                "body_classifier_learning_rate")


@pytest.mark.parametrize("kwargs", [
    {},
    {"batch_size": 8, "num_epochs": 3, "body_learning_rate": 3e-5},
    {"batch_size": (8, 4), "num_epochs": (2, 5), "body_learning_rate": (3e-5, 2e-5)},
], ids=["defaults", "scalars", "tuples"])
def test_tuple_fields_split_into_phases_alike(kwargs):
    theirs, ours = setfit.TrainingArguments(report_to="none", **kwargs), TrainingArguments(**kwargs)
    assert {f: getattr(ours, f) for f in PHASE_FIELDS} == {f: getattr(theirs, f) for f in PHASE_FIELDS}


def _plain(value):
    """setfit's to_dict values as setfit_core writes them: tuples as lists, classes and functions by name."""
    if isinstance(value, tuple):
        return list(value)
    if callable(value):
        return value.__name__
    return getattr(value, "value", value)  # transformers' IntervalStrategy enums


def test_to_dict_has_setfits_fields_and_defaults_as_plain_values():
    theirs, ours = setfit.TrainingArguments(report_to="none").to_dict(), TrainingArguments().to_dict()
    # evaluation_strategy is only a deprecated alias of eval_strategy; report_to's default differs on purpose.
    common = set(theirs) - {"evaluation_strategy", "report_to"}
    assert set(ours) - common == {"preset", "loss_params", "gradient_checkpointing", "report_to"}
    assert {k: ours[k] for k in common} == {k: _plain(theirs[k]) for k in common}
    json.dumps(ours)  # the difference: setfit's holds a loss class and a distance function
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps(theirs)


@pytest.mark.parametrize("library", LIBRARIES)
def test_from_dict_copy_and_update_behave_alike(library):
    lib = LIBRARIES[library]
    args = lib.TrainingArguments(batch_size=(8, 4), num_epochs=(2, 5), report_to="none")
    assert lib.TrainingArguments.from_dict(args.to_dict()) == args
    assert lib.TrainingArguments.from_dict({**args.to_dict(), "not_a_field": 1}, ignore_extra=True) == args
    copied = args.copy()
    assert copied == args and copied is not args
    updated = args.update({"num_epochs": 7, "not_a_field": 1}, ignore_extra=True)
    assert (updated.num_epochs, args.num_epochs) == ((7, 7), (2, 5))
    # An unknown key: setfit's constructor TypeError; setfit_core names the closest field.
    error = (TypeError, "unexpected keyword argument 'num_iteration'") if library == "setfit" else \
        (ValueError, "did you mean 'num_iterations'")
    with pytest.raises(error[0], match=error[1]):
        lib.TrainingArguments.from_dict({"num_iteration": 3})


def test_a_distance_function_is_taken_as_setfit_takes_it():
    from sentence_transformers.sentence_transformer.losses import BatchHardTripletLossDistanceFunction as Distances

    function = Distances.euclidean_distance
    theirs = setfit.TrainingArguments(loss="BatchHardTripletLoss", distance_metric=function, report_to="none")
    ours = TrainingArguments(loss="BatchHardTripletLoss", distance_metric=function)
    # setfit keeps the function; setfit_core its name, so the arguments go to JSON and into stage keys.
    assert (theirs.distance_metric, ours.distance_metric) == (function, "euclidean")


def test_to_json_string_and_to_sanitized_dict_have_setfits_keys():
    theirs, ours = setfit.TrainingArguments(report_to="none"), TrainingArguments()
    ours_only, theirs_only = {"preset", "loss_params", "gradient_checkpointing"}, {"evaluation_strategy"}
    assert set(json.loads(ours.to_json_string())) - ours_only == set(json.loads(theirs.to_json_string())) - theirs_only
    theirs, ours = theirs.to_sanitized_dict(), ours.to_sanitized_dict()
    assert set(ours) - ours_only == set(theirs) - theirs_only
    # setfit writes its loss class, distance function and strategy enums as their reprs; setfit_core has names.
    same = set(theirs) - theirs_only - {"loss", "distance_metric", "eval_strategy", "logging_strategy", "report_to"}
    assert {k: ours[k] for k in same} == {k: theirs[k] for k in same}
    assert (ours["loss"], ours["eval_strategy"]) == ("CosineSimilarityLoss", "no")


# ---- sample_dataset and get_templated_dataset -----------------------------------------------------------


def _class_label_rows():
    features = datasets.Features({"text": datasets.Value("string"), "source": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos", "neu"])})
    return datasets.Dataset.from_dict({"text": [f"text {i}" for i in range(30)], "source": ["web"] * 30,
                                       "label": [i % 3 for i in range(30)]}, features=features)


@pytest.mark.parametrize("call, kwargs", [
    ("sample_dataset", {"num_samples": 4, "seed": 0}),
    ("sample_dataset", {"num_samples": 4, "seed": 7}),
    ("get_templated_dataset", {"candidate_labels": ["neg", "pos", "neu"], "sample_size": 2}),
    ("get_templated_dataset", {"candidate_labels": ["neg", "pos", "neu"], "template": "About {}.", "sample_size": 1}),
])
def test_data_helpers_give_the_same_rows_and_features(call, kwargs):
    data = _class_label_rows()
    theirs, ours = getattr(setfit, call)(data, **kwargs), getattr(setfit_core, call)(data, **kwargs)
    assert ours.to_dict() == theirs.to_dict()
    assert ours.features == theirs.features


# ---- a trained model's surface --------------------------------------------------------------------------

CALLS = {
    "predict": lambda m: m.predict(TEXTS),
    "predict one": lambda m: m.predict(TEXTS[0]),
    "predict ids": lambda m: m.predict(TEXTS, use_labels=False),
    "predict ids numpy": lambda m: m.predict(TEXTS, use_labels=False, as_numpy=True),
    "predict numpy": lambda m: m.predict(TEXTS, as_numpy=True),
    "__call__": lambda m: m(TEXTS),
    "predict_proba": lambda m: m.predict_proba(TEXTS),
    "predict_proba numpy": lambda m: m.predict_proba(TEXTS, as_numpy=True),
    "predict_proba one": lambda m: m.predict_proba(TEXTS[0]),
    "encode": lambda m: m.encode(TEXTS),
}
# Documented differences (docs/coming-from-setfit.md), as (setfit's, setfit_core's) shapes.
DIFFERENT = {
    # With labels, setfit ignores as_numpy=True and returns a list; setfit_core returns an array of names.
    ("ids+labels", "predict numpy"): (("list", "str", 4), ("ndarray", "U", (4,))),
    ("differentiable", "predict numpy"): (("list", "str", 4), ("ndarray", "U", (4,))),
    # setfit fits its scikit-learn head on the label strings themselves: predictions are numpy strings, also
    # with use_labels=False. setfit_core fits head indices and names them: a list of names, or the indices.
    ("strings", "predict"): (("ndarray", "U", (4,)), ("list", "str", 4)),
    ("strings", "predict one"): (("str_", None, None), ("str", None, None)),
    ("strings", "__call__"): (("ndarray", "U", (4,)), ("list", "str", 4)),
    ("strings", "predict ids"): (("ndarray", "U", (4,)), ("tensor", "torch.int64", (4,))),
    ("strings", "predict ids numpy"): (("ndarray", "U", (4,)), ("ndarray", "i", (4,))),
}


@pytest.mark.parametrize("case", CASES)
def test_trained_models_answer_in_the_same_types(trained, case):
    theirs, _, _ = trained("setfit", case)
    ours, _, _ = trained("setfit_core", case)
    assert (ours.labels, ours.id2label, ours.label2id) == (theirs.labels, theirs.id2label, theirs.label2id)
    assert ours.labels == LABELS
    assert ours.has_differentiable_head == theirs.has_differentiable_head == (case == "differentiable")
    for name, call in CALLS.items():
        expected = DIFFERENT.get((case, name), (shape_of(call(theirs)),) * 2)
        assert (shape_of(call(theirs)), shape_of(call(ours))) == expected, name
    for model in (theirs, ours):  # in both, a prediction is the label of the most probable class
        best = model.predict_proba(TEXTS, as_numpy=True).argmax(axis=1)
        assert [str(p) for p in model.predict(TEXTS)] == [LABELS[i] for i in best]


def test_callbacks_see_the_same_events(trained):
    _, _, theirs = trained("setfit", "ids+labels")
    _, _, ours = trained("setfit_core", "ids+labels")
    assert {"on_init_end", "on_train_begin", "on_step_end", "on_log", "on_train_end"} <= ours.events
    assert ours.events == theirs.events - OPTIMIZER_EVENTS
    assert OPTIMIZER_EVENTS <= theirs.events


# ---- one saved model, loaded by both ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def both_load_ours(trained, tmp_path_factory):
    """setfit_core's trained model saved with setfit_compatible=True, loaded by each library."""
    ours, _, _ = trained("setfit_core", "ids+labels")
    path = tmp_path_factory.mktemp("saved") / "model"
    ours.save_pretrained(str(path), setfit_compatible=True)
    return (setfit.SetFitModel.from_pretrained(str(path), device="cpu"),
            SetFitModel.from_pretrained(str(path), device="cpu"))


def test_setfit_loads_a_setfit_compatible_model_and_predicts_the_same(both_load_ours):
    theirs, ours = both_load_ours
    assert theirs.labels == ours.labels == LABELS
    assert list(theirs.predict(TEXTS)) == list(ours.predict(TEXTS))
    np.testing.assert_allclose(theirs.predict_proba(TEXTS, as_numpy=True), ours.predict_proba(TEXTS, as_numpy=True),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["ids+labels", "differentiable"])
def test_setfit_core_loads_setfits_pickle_only_when_trusted(trained, case, tmp_path):
    theirs, _, _ = trained("setfit", case)
    theirs.save_pretrained(str(tmp_path / "model"))
    holds = r"differentiable head \(setfit\.modeling\.SetFitHead, a torch module" if case == "differentiable" \
        else r"scikit-learn head \(sklearn\.linear_model\._logistic\.LogisticRegression"
    with pytest.raises(UnsafeHeadError, match=rf"model_head\.pkl', a pickled {holds}.*trust_pickle=True"):
        SetFitModel.from_pretrained(str(tmp_path / "model"))
    ours = SetFitModel.from_pretrained(str(tmp_path / "model"), trust_pickle=True)
    assert ours.labels == theirs.labels and ours.has_differentiable_head == theirs.has_differentiable_head
    assert list(ours.predict(TEXTS)) == list(theirs.predict(TEXTS))
    np.testing.assert_allclose(ours.predict_proba(TEXTS, as_numpy=True), theirs.predict_proba(TEXTS, as_numpy=True),
                               rtol=1e-5, atol=1e-6)


# ---- Trainer.evaluate ------------------------------------------------------------------------------------


class HubMetrics:
    """Stands in for `evaluate.load`, which fetches metric scripts from the Hub (setfit's path, offline here).
    Its results have the shape evaluate's accuracy and f1 scripts give: {name: float}, computed by scikit-learn."""

    def __init__(self):
        self.loaded: list[str] = []

    def load(self, name, config_name=None):
        from sklearn import metrics

        self.loaded.append(name)
        score = {"accuracy": metrics.accuracy_score, "f1": metrics.f1_score}[name]

        class Metric:
            @staticmethod
            def compute(predictions, references, **kwargs):
                return {name: float(score(references, predictions, **kwargs))}

        return Metric()


def _evaluate_both(both_load_ours, monkeypatch, metric, metric_kwargs=None, **evaluate_kwargs):
    hub = HubMetrics()
    monkeypatch.setattr("evaluate.load", hub.load)
    results = []
    for lib, model in zip((setfit, setfit_core), both_load_ours, strict=True):
        # No train_dataset: both evaluate a trained model on its own labels.
        trainer = lib.Trainer(model=model, args=lib.TrainingArguments(report_to="none"),
                              eval_dataset=datasets.Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 0]}),
                              metric=metric, metric_kwargs=metric_kwargs)
        results.append(trainer.evaluate(**evaluate_kwargs))
    return *results, hub.loaded


@pytest.mark.parametrize("metric, metric_kwargs", [("accuracy", None), ("f1", {"average": "macro"})])
def test_evaluate_gives_setfits_keys_and_values_computed_locally(both_load_ours, monkeypatch, metric, metric_kwargs):
    theirs, ours, loaded = _evaluate_both(both_load_ours, monkeypatch, metric, metric_kwargs)
    assert set(ours) == set(theirs) == {metric}
    assert ours[metric] == pytest.approx(theirs[metric])
    assert loaded == [metric]  # setfit went to the Hub once; setfit_core never calls evaluate.load


def test_evaluate_with_a_callable_metric(both_load_ours, monkeypatch):
    def counts(y_pred, y_true):
        return {"n": len(y_true), "right": int((np.asarray(y_pred) == np.asarray(y_true)).sum())}

    theirs, ours, _ = _evaluate_both(both_load_ours, monkeypatch, counts)
    assert ours == theirs and ours["n"] == 4
    theirs, ours, _ = _evaluate_both(both_load_ours, monkeypatch, lambda y_pred, y_true: 0.5)
    assert ours == theirs == {"metric": 0.5}
    # metric_key_prefix names the keys only elsewhere (setfit: the model card; setfit_core: callbacks' logs).
    theirs, ours, _ = _evaluate_both(both_load_ours, monkeypatch, counts, metric_key_prefix="test")
    assert ours == theirs and set(ours) == {"n", "right"}


# ---- Trainer's other call forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_train_keyword_arguments_warn_and_are_ignored(trained, library):
    lib = LIBRARIES[library]
    model, _, _ = trained(library, "ids+labels")
    args = lib.TrainingArguments(report_to="none", num_epochs=1)
    trainer = lib.Trainer(model=model, args=args, train_dataset=datasets.Dataset.from_dict(int_rows()))
    used = []
    trainer.train_embeddings = lambda *a, args=None, **kw: used.append(args)
    trainer.train_classifier = lambda *a, args=None, **kw: used.append(args)
    with pytest.warns(DeprecationWarning, match=r"`Trainer.train` does not accept keyword arguments anymore"):
        trainer.train(num_epochs=5)
    assert used == [args, args] and args.num_epochs == (1, 1)


@pytest.mark.parametrize("library", LIBRARIES)
def test_list_forms_of_the_two_phases_train_a_model(tiny_model_dir, tmp_path, single_torch_thread, library):
    """setfit's `train_embeddings(x_train, y_train)` and `train_classifier(x_train, y_train)`, no train_dataset."""
    lib = LIBRARIES[library]
    model = lib.SetFitModel.from_pretrained(tiny_model_dir, device="cpu", labels=LABELS)
    trainer = lib.Trainer(model=model, args=args_for(lib, tmp_path))
    rows = int_rows()
    trainer.train_embeddings(rows["text"], rows["label"])
    trainer.train_classifier(rows["text"], rows["label"])
    assert set(model.predict(TEXTS)) <= set(LABELS) and model.labels == LABELS


@pytest.mark.parametrize("library", LIBRARIES)
def test_trainer_push_to_hub_needs_the_full_repo_id(trained, library):
    lib = LIBRARIES[library]
    model, _, _ = trained(library, "ids+labels")
    with pytest.raises(ValueError, match=r"repo_id. must be a full repository (ID|id)"):
        lib.Trainer(model=model, args=lib.TrainingArguments(report_to="none")).push_to_hub("setfit-sst2")


# ---- the deprecated 0.x names ----------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_setfittrainer_warns_in_both(trained, tiny_model_dir, library):
    lib = LIBRARIES[library]
    model, _, _ = trained(library, "ids+labels")
    train = datasets.Dataset.from_dict(int_rows())
    with pytest.warns(DeprecationWarning, match="SetFitTrainer"):
        lib.SetFitTrainer(model=model, train_dataset=train, num_iterations=1)
    student = lib.SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.warns(DeprecationWarning, match="DistillationSetFitTrainer"):
        lib.DistillationSetFitTrainer(teacher_model=model, student_model=student, train_dataset=train,
                                      num_iterations=1)

from __future__ import annotations

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from setfit_core import EngineOptions, SetFitModel, SupConLoss, Trainer, TrainingArguments
from setfit_core.losses import LOSSES


def body_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model_body.state_dict().items()}


def same_state(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def model(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


def test_train_runs_body_then_head(model, tiny_data, tiny_args):
    before = body_state(model)
    trainer = Trainer(model, tiny_args, train_dataset=tiny_data, eval_dataset=tiny_data)
    trainer.train()
    assert not same_state(before, body_state(model)), "phase 1 must change the body"
    assert hasattr(model.model_head, "coef_"), "phase 2 must fit the head"
    assert trainer.body_result.steps == 4  # 2·2·16 pairs / batch 16
    metrics = trainer.evaluate()
    assert set(metrics) == {"accuracy"} and 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("end_to_end", [False, True])
def test_end_to_end_decides_whether_phase_2_moves_the_body(tiny_model_dir, tiny_data, tiny_args, end_to_end):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    args = tiny_args.replace(end_to_end=end_to_end, batch_size=(16, 4))
    trainer = Trainer(model, args, train_dataset=tiny_data)
    trainer.train_embeddings()
    after_phase_1 = body_state(model)
    head_before = model.model_head
    trainer.train_classifier()
    assert model.model_head is not None and head_before is None
    assert same_state(after_phase_1, body_state(model)) is (not end_to_end)
    assert all(p.requires_grad for p in model.model_body.parameters()), "the body is unfrozen afterwards"


def test_same_seed_same_model_other_seed_other_model(tiny_model_dir, tiny_data, tiny_args):
    def run(seed):
        model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
        Trainer(model, tiny_args.replace(seed=seed), train_dataset=tiny_data).train()
        return body_state(model), model.model_head.coef_.copy()

    (a_body, a_head), (b_body, b_head), (c_body, _) = run(1), run(1), run(2)
    assert same_state(a_body, b_body) and np.array_equal(a_head, b_head)
    assert not same_state(a_body, c_body)


@pytest.mark.parametrize("kind", ["dict", "pandas", "datasets"])
def test_accepts_dict_dataframe_and_dataset(model, tiny_data, tiny_args, kind):
    data = {"dict": tiny_data, "pandas": pd.DataFrame(tiny_data),
            "datasets": datasets.Dataset.from_dict(tiny_data)}[kind]
    trainer = Trainer(model, tiny_args, train_dataset=data, eval_dataset=data)
    trainer.train()
    assert "accuracy" in trainer.evaluate()


@pytest.mark.parametrize("metric", ["accuracy", "f1", "precision", "recall", "matthews_correlation"])
def test_named_metrics_are_computed_locally(model, tiny_data, tiny_args, metric):
    trainer = Trainer(model, tiny_args, train_dataset=tiny_data, eval_dataset=tiny_data, metric=metric)
    trainer.train()
    result = trainer.evaluate()
    assert list(result) == [metric] and -1.0 <= result[metric] <= 1.0


def test_callable_metric_gets_predictions_truth_and_kwargs(model, tiny_data, tiny_args):
    seen = {}

    def metric(y_pred, y_true, scale=1):
        seen.update(n=len(y_pred), scale=scale)
        return {"hits": float((np.asarray(y_pred) == np.asarray(y_true)).sum()) * scale}

    trainer = Trainer(model, tiny_args, train_dataset=tiny_data, metric=metric, metric_kwargs={"scale": 2})
    trainer.train()
    result = trainer.evaluate({"text": ["good movie", "bad movie"], "label": [1, 0]})
    assert seen == {"n": 2, "scale": 2} and 0 <= result["hits"] <= 4


def test_multiclass_f1_defaults_to_macro(model, tiny_args):
    data = {"text": ["good", "great", "bad", "awful", "movie", "film"], "label": [0, 0, 1, 1, 2, 2]}
    trainer = Trainer(model, tiny_args, train_dataset=data, eval_dataset=data, metric="f1")
    trainer.train()
    assert 0.0 <= trainer.evaluate()["f1"] <= 1.0


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains(tiny_model_dir, tiny_data, tiny_args, loss):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    before = body_state(model)
    trainer = Trainer(model, tiny_args.replace(loss=loss, batch_size=(8, 2)), train_dataset=tiny_data)
    trainer.train()
    assert trainer.body_result.steps > 0
    assert np.isfinite(trainer.body_result.train_loss)
    if loss != "BatchHardSoftMarginTripletLoss":  # others may legitimately reach 0 loss on tiny data
        assert not same_state(before, body_state(model))


def test_progress_callback_and_max_steps(model, tiny_data, tiny_args):
    calls = []
    trainer = Trainer(model, tiny_args.replace(num_iterations=20, max_steps=3), train_dataset=tiny_data)
    trainer.train(progress=lambda step, total, loss: calls.append((step, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_eval_strategy_logs_eval_embedding_loss(model, tiny_data, tiny_args):
    args = tiny_args.replace(num_iterations=4, eval_strategy="steps", eval_steps=2, logging_steps=2)
    trainer = Trainer(model, args, train_dataset=tiny_data, eval_dataset=tiny_data)
    trainer.train()
    evals = [row for row in trainer.body_result.log if "eval_embedding_loss" in row]
    assert [row["step"] for row in evals] == [2, 4, 6, 8]


def test_save_strategy_writes_limited_checkpoints(model, tiny_data, tiny_args, tmp_path):
    args = tiny_args.replace(num_iterations=4, save_strategy="steps", save_steps=3, save_total_limit=1,
                             output_dir=str(tmp_path / "ckpt"))
    Trainer(model, args, train_dataset=tiny_data).train()
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["checkpoint-6"]


def test_progress_bar_when_asked(model, tiny_data, tiny_args, capsys):
    Trainer(model, tiny_args.replace(show_progress_bar=True), train_dataset=tiny_data).train()
    assert "Body training" in capsys.readouterr().err


def test_supcon_with_differentiable_head_and_string_labels(tiny_model_dir, tiny_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    data = {"text": ["good", "great", "bad", "awful"] * 2, "label": ["pos", "pos", "neg", "neg"] * 2}
    trainer = Trainer(model, tiny_args.replace(loss=SupConLoss), train_dataset=data, eval_dataset=data)
    trainer.train()
    assert set(model.predict(["good", "bad"])) <= {"pos", "neg"}
    assert "accuracy" in trainer.evaluate()


def test_train_warns_about_keyword_arguments_and_ignores_them_as_setfit(model, tiny_data, tiny_args, monkeypatch):
    trainer = Trainer(model, tiny_args, train_dataset=tiny_data)
    used = []
    monkeypatch.setattr(trainer, "train_embeddings", lambda args, progress: used.append(args))
    monkeypatch.setattr(trainer, "train_classifier", lambda args: used.append(args))
    with pytest.warns(DeprecationWarning, match=r"`Trainer.train` does not accept keyword arguments anymore; "
                                                r"\['num_epochs'\] are ignored \(as in setfit 1.2.0\). Put them in "
                                                r"TrainingArguments and pass args="):
        trainer.train(num_epochs=3)
    assert used == [tiny_args, tiny_args]


# ---- setfit's list forms: train_embeddings(x_train, y_train, ...), train_classifier(x_train, y_train) -------


def test_setfit_list_forms_train_both_phases_without_a_train_dataset(model, tiny_data, tiny_args):
    x, y = tiny_data["text"], ["pos" if label else "neg" for label in tiny_data["label"]]
    trainer = Trainer(model, tiny_args)
    before = body_state(model)
    trainer.train_embeddings(x, y, x[:4] + x[-4:], y[:4] + y[-4:], tiny_args.replace(eval_strategy="epoch"))
    assert not same_state(before, body_state(model))
    assert trainer.body_result.steps == 4 and trainer.probe_metrics is not None  # x_eval scored the probe
    trainer.train_classifier(x, y)
    assert model.labels == ["neg", "pos"] and set(model.predict(["good movie", "awful film"])) <= {"neg", "pos"}
    assert set(trainer.evaluate({"text": x, "label": y})) == {"accuracy"}


def test_list_forms_replace_the_train_dataset_and_reencode_the_eval_dataset(model, tiny_args):
    strings = {"text": ["good", "great", "bad", "awful"], "label": ["pos", "pos", "neg", "neg"]}
    trainer = Trainer(model, tiny_args, train_dataset=strings, eval_dataset=strings)
    trainer.train_classifier(["good", "great", "bad", "awful", "so so"], ["pos", "pos", "neg", "neg", "meh"])
    assert trainer.encoder.labels == ["meh", "neg", "pos"]
    assert trainer.eval_split.ids.tolist() == [2, 2, 1, 1]


def test_the_args_first_forms_still_work(model, tiny_data, tiny_args):
    trainer = Trainer(model, TrainingArguments(), train_dataset=tiny_data)
    trainer.train_embeddings(tiny_args)
    trainer.train_classifier(tiny_args)
    assert trainer.body_result.steps == 4 and hasattr(model.model_head, "coef_")


def test_list_forms_need_texts_and_labels(model, tiny_args):
    trainer = Trainer(model, tiny_args)
    with pytest.raises(ValueError, match=r"train_embeddings\(\) got x_train but no y_train; pass the texts and "
                                         r"their labels as two lists"):
        trainer.train_embeddings(["good", "bad"])
    with pytest.raises(ValueError, match=r"train_embeddings\(\) got y_eval but no x_eval"):
        trainer.train_embeddings(["good", "bad"], [1, 0], y_eval=[1, 0])
    with pytest.raises(ValueError, match=r"train_classifier\(\) got y_train but no x_train"):
        trainer.train_classifier(y_train=[1, 0])
    with pytest.raises(TypeError, match=r"'x_train' must be a list \(or array\) with one entry per example; got str"):
        trainer.train_classifier("good", [1])
    with pytest.raises(ValueError, match=r"Trainer has no train_dataset; pass train_dataset="):
        trainer.train_classifier()


# ---- evaluate, as setfit's ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_model(tiny_model_dir, one_iteration_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, labels=["neg", "pos"], device="cpu")
    data = {"text": ["good movie", "great film", "nice plot", "bad movie", "awful film", "poor plot"],
            "label": [1, 1, 1, 0, 0, 0]}
    Trainer(model, one_iteration_args, train_dataset=data).train()
    return model


@pytest.fixture(scope="module")
def one_iteration_args():
    return TrainingArguments(num_iterations=1, show_progress_bar=False, seed=0, num_epochs=(1, 2),
                             save_strategy="no")


def test_evaluate_without_a_train_dataset_uses_the_models_labels(trained_model, tiny_data):
    names = {"text": tiny_data["text"], "label": ["pos" if label else "neg" for label in tiny_data["label"]]}
    expected = Trainer(trained_model, train_dataset=tiny_data).evaluate(tiny_data)
    assert Trainer(trained_model, eval_dataset=tiny_data).evaluate() == expected  # ids into the labels
    assert Trainer(trained_model, eval_dataset=names).evaluate() == expected  # or the names
    with pytest.raises(ValueError, match=r"eval_dataset has labels \['maybe'\] never seen in training; known "
                                         r"labels: \['neg', 'pos'\]"):
        Trainer(trained_model, eval_dataset={"text": ["so so", "good"], "label": ["maybe", "pos"]})


def test_evaluate_without_a_train_dataset_maps_a_head_fitted_on_label_values(tiny_model_dir, tiny_data):
    """A head fitted on the label values themselves (setfit fits its head on the raw labels, here 1 and 2)
    predicts values: evaluation compares them as head indices."""
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    texts, labels = tiny_data["text"], [label + 1 for label in tiny_data["label"]]
    model.model_head.fit(model.encode(texts, as_numpy=True), labels)
    predicted = model.model_head.predict(model.encode(texts, as_numpy=True))
    assert set(predicted) == {1, 2}
    ours = Trainer(model, eval_dataset={"text": texts, "label": labels}).evaluate()
    assert ours == {"accuracy": pytest.approx(float(np.mean(predicted == np.asarray(labels))))}


def test_evaluate_without_a_train_dataset_needs_a_trained_model(model, tiny_data):
    with pytest.raises(ValueError, match=r"eval_dataset is checked against the training labels, but the Trainer "
                                         r"has no train_dataset and the model no trained head"):
        Trainer(model, eval_dataset=tiny_data)


def test_evaluate_keys_are_never_prefixed_and_a_number_is_metric(trained_model, tiny_data):
    trainer = Trainer(trained_model, eval_dataset=tiny_data, metric=lambda y_pred, y_true: 0.5)
    assert trainer.evaluate() == {"metric": 0.5}
    assert trainer.evaluate(metric_key_prefix="test") == {"metric": 0.5}
    assert set(Trainer(trained_model, eval_dataset=tiny_data).evaluate(metric_key_prefix="test")) == {"accuracy"}


def test_fast_preset_trains_on_balanced_batches(model, tiny_data, tiny_args):
    args = tiny_args.replace(preset="fast")
    assert args.loss is SupConLoss and args.sampling_strategy == "label_balanced"
    trainer = Trainer(model, TrainingArguments(preset="fast", show_progress_bar=False, save_strategy="no", seed=0),
                      train_dataset=tiny_data, eval_dataset=tiny_data)
    trainer.train()
    assert trainer.body_result.steps == 20  # FAST_MIN_STEPS_BINARY: 2 labels, 16 texts
    assert "accuracy" in trainer.evaluate()


def test_unknown_loss_params_fail_before_training(model, tiny_data):
    args = TrainingArguments(loss="SupConLoss", loss_params={"temp": 0.1}, show_progress_bar=False)
    with pytest.raises(ValueError, match=r"loss_params \['temp'\] are not parameters of SupConLoss"):
        Trainer(model, args, train_dataset=tiny_data).train()


def test_sparse_vocabulary_gradients_train_the_same_body_and_are_restored(tiny_model_dir, tiny_data, tiny_args):
    def run(min_vocab):
        # No compact vocabulary: the path for other architectures.
        engine = EngineOptions(compact_vocabulary=False, sparse_vocabulary_min_rows=min_vocab)
        model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
        trainer = Trainer(model, tiny_args, train_dataset=tiny_data, engine=engine)
        trainer.train_embeddings()
        assert trainer.body_result.engine.sparse_vocabulary_grads == (min_vocab == 1)
        assert not any(m.sparse for m in model.model_body.modules() if isinstance(m, torch.nn.Embedding))
        return body_state(model)

    dense, sparse = run(10**9), run(1)
    for name in dense:
        torch.testing.assert_close(sparse[name], dense[name], rtol=1e-4, atol=1e-6, msg=name)

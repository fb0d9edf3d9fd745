"""DistillationTrainer's mechanics on the tiny model: pair targets, the labels the student head fits, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from setfit_core import (
    DistillationSetFitTrainer,
    DistillationTrainer,
    SetFitModel,
    Trainer,
    TrainingArguments,
)
from setfit_core.distillation import distillation_pairs
from setfit_core.training.sampling import sample_text_pairs

UNLABELLED = ["good film", "bad film", "great movie", "awful movie", "i love this film", "i hate this movie",
              "very nice plot", "very poor plot", "so happy", "so sad", "a great actor", "a terrible actor"]


@pytest.fixture(scope="module")
def teacher(tiny_model_dir):
    """A trained tiny teacher; tests never train it further (its body is checked unchanged)."""
    from tests.conftest import TINY_SPLITS

    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    args = TrainingArguments(num_iterations=5, show_progress_bar=False, seed=0, save_strategy="no")
    Trainer(model, args, train_dataset=TINY_SPLITS["train"]).train()
    return model


@pytest.fixture
def student(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


def teacher_ids(teacher, texts):
    return teacher.predict(texts, as_numpy=True, use_labels=False, show_progress_bar=False)


# ---- pairs and their targets ------------------------------------------------------------------------
def test_text_pairs_are_every_distinct_pair_once_then_wrap_around():
    first, second = sample_text_pairs(6, seed=0)
    assert sorted(zip(first.tolist(), second.tolist(), strict=True)) == [(i, j) for i in range(6)
                                                                          for j in range(i + 1, 6)]
    first, second = sample_text_pairs(4, seed=0, num_iterations=5)  # 20 pairs of 6 distinct ones
    assert len(first) == 20 and (first < second).all()
    assert len(set(zip(first[:6].tolist(), second[:6].tolist(), strict=True))) == 6
    assert len(sample_text_pairs(100, seed=0, num_iterations=3, max_pairs=50)[0]) == 50


def test_text_pairs_follow_the_seed():
    a, b, c = (sample_text_pairs(50, seed=s, num_iterations=2) for s in (0, 0, 1))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_pair_targets_are_the_teachers_cosine_similarities():
    embeddings = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    pairs = distillation_pairs(embeddings * 3.0, seed=0, num_iterations=4)  # scale must not matter
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    expected = (unit[pairs.first] * unit[pairs.second]).sum(axis=1)
    assert len(pairs) == 120
    np.testing.assert_allclose(pairs.label, expected, atol=1e-6)
    assert pairs.label.min() < 0 < pairs.label.max()  # real similarities, not 0/1 labels


def test_phase_1_trains_the_student_body_on_the_teachers_similarities(teacher, student):
    teacher_body = {k: v.clone() for k, v in teacher.model_body.state_dict().items()}
    student_body = {k: v.clone() for k, v in student.model_body.state_dict().items()}
    args = TrainingArguments(num_iterations=3, show_progress_bar=False, seed=0, batch_size=8)
    trainer = DistillationTrainer(teacher, student, args, train_dataset=UNLABELLED)
    trainer.train_embeddings()

    pairs = trainer.pairs
    assert trainer.body_result.num_pairs == len(pairs) == 3 * len(UNLABELLED)
    assert trainer.body_result.steps == len(pairs) // 8 + 1
    emb = teacher.encode(UNLABELLED, as_numpy=True)
    expected = torch.cosine_similarity(torch.as_tensor(emb[pairs.first]), torch.as_tensor(emb[pairs.second]))
    np.testing.assert_allclose(pairs.label, expected.numpy(), atol=1e-5)
    assert any(not torch.equal(v, student.model_body.state_dict()[k]) for k, v in student_body.items())
    assert all(torch.equal(v, teacher.model_body.state_dict()[k]) for k, v in teacher_body.items())


# ---- phase 2: the teacher's labels --------------------------------------------------------------------
def test_student_head_fits_the_teachers_predictions_not_the_given_labels(teacher, student):
    predicted = teacher_ids(teacher, UNLABELLED)
    assert len(set(predicted.tolist())) == 2
    flipped = {"text": UNLABELLED, "label": (1 - predicted).tolist()}  # the opposite of the teacher
    args = TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0)
    trainer = DistillationTrainer(teacher, student, args, train_dataset=flipped)
    trainer.train()

    np.testing.assert_array_equal(trainer.teacher_view()[1], predicted)
    # The student's head is exactly a LogisticRegression fitted on its own embeddings and the teacher's ids.
    reference = LogisticRegression().fit(student.encode(UNLABELLED, as_numpy=True), predicted)
    np.testing.assert_allclose(student.model_head.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    assert trainer.agreement(UNLABELLED) > 0.5


def test_string_labels_pass_from_teacher_to_student(teacher, student):
    from tests.conftest import TINY_SPLITS

    assert teacher.labels == ["negative", "positive"]
    args = TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0)
    trainer = DistillationTrainer(teacher, student, args, train_dataset=UNLABELLED,
                                  eval_dataset=TINY_SPLITS["eval"])
    trainer.train()
    assert student.labels == teacher.labels
    assert set(student.predict(UNLABELLED)) <= {"negative", "positive"}
    assert 0.0 <= trainer.evaluate()["accuracy"] <= 1.0
    assert 0.0 <= trainer.agreement() <= 1.0  # on the eval_dataset's texts


def test_a_differentiable_student_head_gets_one_output_per_teacher_class(teacher, tiny_model_dir):
    student = SetFitModel.from_pretrained(tiny_model_dir, device="cpu", use_differentiable_head=True)
    args = TrainingArguments(num_iterations=2, num_epochs=(1, 3), show_progress_bar=False, seed=0)
    trainer = DistillationTrainer(teacher, student, args, train_dataset={"text": UNLABELLED})
    trainer.train()
    assert student.model_head.out_features == 2
    assert set(student.predict(UNLABELLED)) <= {"negative", "positive"}


def test_the_0x_form_warns_and_trains_the_same_student(teacher, tiny_model_dir):
    old_student = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.warns(DeprecationWarning, match=r"DistillationSetFitTrainer is deprecated; write DistillationTrainer"
                                                r"\(teacher_model=teacher, student_model=student, "
                                                r"args=TrainingArguments\(batch_size=16, num_epochs=1, "
                                                r"num_iterations=2"):
        old = DistillationSetFitTrainer(teacher, old_student, train_dataset=UNLABELLED, num_iterations=2, seed=0)
    with pytest.warns(DeprecationWarning, match=r"DistillationSetFitTrainer.train\(...\) is deprecated; the "
                                                r"equivalent is DistillationTrainer\(teacher, student, "
                                                r"args=TrainingArguments\(batch_size=16, num_epochs=2, "
                                                r"num_iterations=2"):
        old.train(num_epochs=2, show_progress_bar=False)
    new_student = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    args = TrainingArguments(num_iterations=2, seed=0, batch_size=16, num_epochs=2, show_progress_bar=False,
                             body_learning_rate=2e-5, head_learning_rate=2e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new form warns nothing
        DistillationTrainer(teacher, new_student, args, train_dataset=UNLABELLED).train()
    for (name, a), b in zip(old_student.model_body.state_dict().items(),
                            new_student.model_body.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(old_student.model_head.coef_, new_student.model_head.coef_)


# ---- bad input ---------------------------------------------------------------------------------------
def test_the_teacher_must_be_a_trained_setfit_model(student, tiny_model_dir):
    with pytest.raises(TypeError, match=r"'teacher_model' must be a setfit_core.SetFitModel; got str"):
        DistillationTrainer("teacher", student, train_dataset=UNLABELLED)
    untrained = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match=r"teacher_model has no trained head; train it first"):
        DistillationTrainer(untrained, student, train_dataset=UNLABELLED)
    lazy = SetFitModel.from_pretrained(tiny_model_dir, device="cpu", use_differentiable_head=True)
    with pytest.raises(ValueError, match=r"teacher_model has no trained head"):
        DistillationTrainer(lazy, student, train_dataset=UNLABELLED)


def test_the_student_must_be_a_separate_compatible_model(teacher, tiny_model_dir):
    with pytest.raises(ValueError, match=r"student_model must be a separate model from teacher_model"):
        DistillationTrainer(teacher, teacher, train_dataset=UNLABELLED)
    with pytest.raises(ValueError, match=r"Trainer needs a model"):
        DistillationTrainer(teacher, None, train_dataset=UNLABELLED)
    multi = SetFitModel.from_pretrained(tiny_model_dir, device="cpu", multi_target_strategy="one-vs-rest")
    with pytest.raises(ValueError, match=r"teacher_model has multi_target_strategy=None but student_model "
                                         r"'one-vs-rest'; load the student with multi_target_strategy=None"):
        DistillationTrainer(teacher, multi, train_dataset=UNLABELLED)
    named = SetFitModel.from_pretrained(tiny_model_dir, device="cpu", labels=["neg", "pos"])
    with pytest.raises(ValueError, match=r"student_model has labels \['neg', 'pos'\] but teacher_model predicts "
                                         r"\['negative', 'positive'\]; leave the student's labels unset"):
        DistillationTrainer(teacher, named, train_dataset=UNLABELLED)
    three = SetFitModel.from_pretrained(tiny_model_dir, device="cpu", use_differentiable_head=True,
                                        head_params={"out_features": 3})
    with pytest.raises(ValueError, match=r"head_params\['out_features'\] is 3 but the training data has 2 classes"):
        DistillationTrainer(teacher, three, train_dataset=UNLABELLED)


def test_only_a_pair_loss_can_learn_similarity_targets(teacher, student):
    args = TrainingArguments(loss="BatchHardTripletLoss")
    with pytest.raises(ValueError, match=r"'loss' must be a pair loss such as CosineSimilarityLoss; got "
                                         r"'BatchHardTripletLoss'"):
        DistillationTrainer(teacher, student, args, train_dataset=UNLABELLED)
    trainer = DistillationTrainer(teacher, student, train_dataset=UNLABELLED)
    with pytest.raises(ValueError, match=r"must be a pair loss .* got 'SupConLoss'"):
        trainer.train(TrainingArguments(preset="fast"))


@pytest.mark.parametrize(("dataset", "message"), [
    ({"sentence": ["a", "b"]}, r"train_dataset has no 'text' column; found columns: \['sentence'\]. Rename it, "
                               r"pass column_mapping=\{'<your text column>': 'text'\}, or give a list of strings"),
    (["only one text"], r"train_dataset has 1 text\(s\); it needs at least 2"),
    (["good film", None], r"train_dataset column 'text' row 1 is None \(NoneType\); every text must be a string"),
    ("good film", r"train_dataset must be a datasets.Dataset, a pandas DataFrame or a dict of lists"),
])
def test_bad_train_texts_are_named(teacher, student, dataset, message):
    with pytest.raises((ValueError, TypeError), match=message):
        DistillationTrainer(teacher, student, train_dataset=dataset)


def test_column_mapping_and_missing_train_data(teacher, student):
    trainer = DistillationTrainer(teacher, student, train_dataset={"sentence": UNLABELLED},
                                  column_mapping={"sentence": "text"})
    assert trainer.train_texts == UNLABELLED
    empty = DistillationTrainer(teacher, student)
    with pytest.raises(ValueError, match=r"DistillationTrainer has no train_dataset; pass train_dataset="):
        empty.train()


def test_eval_labels_must_be_the_teachers(teacher, student):
    with pytest.raises(ValueError, match=r"eval_dataset has labels \['neutral'\] never seen in training; known "
                                         r"labels: \['negative', 'positive'\]"):
        DistillationTrainer(teacher, student, train_dataset=UNLABELLED,
                            eval_dataset={"text": ["meh"], "label": ["neutral"]})


def test_texts_the_teacher_puts_in_one_class_cannot_train_a_head(teacher, student):
    texts = ["great film"] * 4
    trainer = DistillationTrainer(teacher, student, train_dataset=texts)
    only = teacher.predict(["great film"])[0]
    with pytest.raises(ValueError, match=rf"teacher_model predicts one class \('{only}'\) for all 4 train texts"):
        trainer.train_classifier()

"""The setfit 0.x API still works, warns, and trains the same model as the new API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

from setfit_core import SetFitModel, SetFitTrainer, Trainer, TrainingArguments


def sentence_data(tiny_data):
    """The old README's datasets used a `sentence` column, hence its column_mapping."""
    return {"sentence": tiny_data["text"], "label": tiny_data["label"]}


def run_old_example(model_dir, train_dataset, eval_dataset, num_iterations=20):
    """setfit 0.x README (differentiable head, end to end), as written but for the model id."""
    model = SetFitModel.from_pretrained(model_dir, use_differentiable_head=True, head_params={"out_features": 2})
    trainer = SetFitTrainer(
        model=model,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        loss_class=CosineSimilarityLoss,
        metric="accuracy",
        batch_size=16,
        num_iterations=num_iterations,
        num_epochs=1,
        column_mapping={"sentence": "text", "label": "label"},
    )
    trainer.freeze()  # Freeze the head
    trainer.train()  # Train only the body
    trainer.unfreeze(keep_body_frozen=False)  # Unfreeze the head and the body: end-to-end training
    trainer.train(num_epochs=16, batch_size=2, body_learning_rate=1e-5, learning_rate=1e-2)
    return model, trainer.evaluate()


def run_new_example(model_dir, train_dataset, eval_dataset, num_iterations=20, seed=42):
    model = SetFitModel.from_pretrained(model_dir, use_differentiable_head=True, head_params={"out_features": 2})
    args = TrainingArguments(
        batch_size=(16, 2),
        num_epochs=(1, 16),
        body_learning_rate=(2e-5, 1e-5),
        head_learning_rate=1e-2,
        end_to_end=True,
        num_iterations=num_iterations,
        seed=seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        metric="accuracy",
        column_mapping={"sentence": "text", "label": "label"},
    )
    trainer.train()
    return model, trainer.evaluate()


def test_old_and_new_examples_give_the_same_model(tiny_model_dir, tiny_data):
    data = sentence_data(tiny_data)
    with pytest.warns(DeprecationWarning):
        old_model, old_metrics = run_old_example(tiny_model_dir, data, data, num_iterations=3)
    new_model, new_metrics = run_new_example(tiny_model_dir, data, data, num_iterations=3)
    old, new = old_model.model_body.state_dict(), new_model.model_body.state_dict()
    body_pairs = zip(old.items(), new.values(), strict=True)
    for (name, a), b in body_pairs:
        assert torch.equal(a, b), name
    old, new = old_model.model_head.state_dict(), new_model.model_head.state_dict()
    head_pairs = zip(old.values(), new.values(), strict=True)
    for a, b in head_pairs:
        assert torch.equal(a, b)
    assert old_metrics == new_metrics
    texts = ["good movie", "awful film"]
    assert torch.equal(old_model.predict(texts), new_model.predict(texts))


def test_a_different_seed_gives_a_different_model(tiny_model_dir, tiny_data):
    data = sentence_data(tiny_data)
    a, _ = run_new_example(tiny_model_dir, data, data, num_iterations=3, seed=1)
    b, _ = run_new_example(tiny_model_dir, data, data, num_iterations=3, seed=2)
    assert not torch.equal(a.model_head.linear.weight, b.model_head.linear.weight)


def test_every_legacy_call_warns_with_the_new_equivalent(tiny_model_dir, tiny_data):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True)
    with pytest.warns(DeprecationWarning, match=r"SetFitTrainer is deprecated; write Trainer\(model=model, "
                                                r"args=TrainingArguments\(batch_size=16, num_epochs=1, "
                                                r"num_iterations=3, body_learning_rate=2e-05, "
                                                r"head_learning_rate=2e-05"):
        trainer = SetFitTrainer(model=model, train_dataset=tiny_data, num_iterations=3)
    with pytest.warns(DeprecationWarning, match=r"freeze\(\) is deprecated: Trainer.train\(\) freezes and "
                                                r"unfreezes by itself"):
        trainer.freeze()
    with pytest.warns(DeprecationWarning, match=r"SetFitTrainer.train\(...\) is deprecated; the equivalent is "
                                                r"Trainer\(model, args=TrainingArguments\("):
        trainer.train()
    with pytest.warns(DeprecationWarning, match=r"unfreeze\(keep_body_frozen=False\) is deprecated: set "
                                                r"TrainingArguments\(end_to_end=True\)"):
        trainer.unfreeze(keep_body_frozen=False)
    with pytest.warns(DeprecationWarning, match=r"batch_size=\(16, 2\), num_epochs=\(1, 4\), "
                                                r".*body_learning_rate=\(2e-05, 1e-05\), head_learning_rate=0.01, "
                                                r".*end_to_end=True"):
        trainer.train(num_epochs=4, batch_size=2, body_learning_rate=1e-5, learning_rate=1e-2)


def test_legacy_phases_follow_0x_semantics(tiny_model_dir, tiny_data):
    """Differentiable head: train() before unfreeze() trains only the body; after it, only the head."""
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer = SetFitTrainer(model=model, train_dataset=tiny_data, num_iterations=2)
        trainer.freeze()
        trainer.train()
        assert model.model_head is None and trainer.body_result is not None
        body = {k: v.clone() for k, v in model.model_body.state_dict().items()}
        trainer.unfreeze(keep_body_frozen=True)
        trainer.train(num_epochs=2)
    assert model.model_head is not None
    assert all(torch.equal(body[k], v) for k, v in model.model_body.state_dict().items()), "body stayed frozen"


def test_legacy_with_sklearn_head_runs_both_phases(tiny_model_dir, tiny_data):
    model = SetFitModel.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        trainer = SetFitTrainer(model=model, train_dataset=tiny_data, eval_dataset=tiny_data, num_iterations=2)
        trainer.train()
    assert trainer.body_result.steps == 4
    assert np.isfinite(trainer.evaluate()["accuracy"])

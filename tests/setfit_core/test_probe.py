"""The frozen-probe baseline in the Trainer: scored on the eval_dataset before phase 1, compared in evaluate()."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from setfit_core import SetFitModel, Trainer
from tests.conftest import TINY_SPLITS

# A body learning rate of 1.0 wrecks the tiny body in a few steps: a deliberately bad recipe.
WRECKING_LR = 1.0


def probe_accuracy(model_dir: str, **head_params) -> float:
    """The probe computed by hand: untouched body, LogisticRegression on the train split, eval accuracy."""
    body = SetFitModel.from_pretrained(model_dir, device="cpu")
    train, evaluation = TINY_SPLITS["train"], TINY_SPLITS["eval"]
    head = LogisticRegression(**head_params).fit(body.encode(train["text"]), train["label"])
    return float(np.mean(head.predict(body.encode(evaluation["text"])) == np.asarray(evaluation["label"])))


def trainer_for(model_dir: str, args, **model_kwargs) -> Trainer:
    model = SetFitModel.from_pretrained(model_dir, device="cpu", **model_kwargs)
    return Trainer(model, args, train_dataset=TINY_SPLITS["train"], eval_dataset=TINY_SPLITS["eval"])


def test_a_model_below_the_probe_is_a_warning_with_both_numbers(tiny_model_dir, tiny_args, caplog):
    trainer = trainer_for(tiny_model_dir, tiny_args.replace(num_iterations=5, body_learning_rate=WRECKING_LR))
    trainer.train()
    expected = probe_accuracy(tiny_model_dir)
    assert trainer.probe_metrics == {"accuracy": pytest.approx(expected)}
    with caplog.at_level(logging.WARNING, logger="setfit_core.trainer"):
        metrics = trainer.evaluate()
    comparison = trainer.probe_comparison
    assert comparison.below and comparison.model == metrics["accuracy"] < comparison.probe == pytest.approx(expected)
    assert (f"fine-tuning did not help on eval_dataset: the model's accuracy is {metrics['accuracy']:.4f}, below the "
            f"frozen-probe baseline's {expected:.4f}") in caplog.text


def test_a_model_that_gained_is_quiet(tiny_model_dir, tiny_args, caplog):
    trainer = trainer_for(tiny_model_dir, tiny_args.replace(num_iterations=5, body_learning_rate=1e-2))
    trainer.train()
    with caplog.at_level(logging.WARNING, logger="setfit_core.trainer"):
        metrics = trainer.evaluate()
    assert metrics["accuracy"] > trainer.probe_metrics["accuracy"] and not trainer.probe_comparison.below
    assert "did not help" not in caplog.text


def test_the_probe_uses_the_models_head_settings(tiny_model_dir, tiny_args):
    trainer = trainer_for(tiny_model_dir, tiny_args, head_params={"C": 0.01})
    trainer.train_embeddings()
    assert trainer.probe_metrics == {"accuracy": pytest.approx(probe_accuracy(tiny_model_dir, C=0.01))}


def test_a_differentiable_head_is_compared_with_setfits_default_head(tiny_model_dir, tiny_args):
    trainer = trainer_for(tiny_model_dir, tiny_args.replace(batch_size=(16, 4)), use_differentiable_head=True)
    trainer.train()
    assert trainer.probe_metrics == {"accuracy": pytest.approx(probe_accuracy(tiny_model_dir))}
    trainer.evaluate()
    assert trainer.probe_comparison is not None


def test_no_eval_dataset_no_probe(tiny_model_dir, tiny_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    trainer = Trainer(model, tiny_args, train_dataset=TINY_SPLITS["train"])
    trainer.train()
    trainer.evaluate(TINY_SPLITS["eval"])  # another dataset than eval_dataset: no probe score to compare with
    assert trainer.probe_metrics is None and trainer.probe_comparison is None

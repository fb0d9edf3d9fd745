"""The evaluation stage scores the frozen-probe baseline beside the model and reports a model below it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from setfit_core.metrics import classification_report
from setfit_core.model_io.body_loading import load_body
from setfit_core.modeling import SetFitModel
from setfit_core.pipeline import PipelineRun
from setfit_core.pipeline.evaluation_stage import probe_comparisons
from setfit_core.pipeline.report import metric_rows, summary_markdown
from tests.conftest import TINY_SPLITS
from tests.setfit_core.pipeline.conftest import TINY_ARGS

WRECKING_ARGS = {**TINY_ARGS, "num_iterations": 5, "body_learning_rate": 1.0}  # a deliberately bad recipe


def expected_probe(model_dir: str, split: str, **head_params) -> dict[str, float]:
    """By hand: the untouched body, LogisticRegression fitted on the train split, scored on `split`."""
    body = SetFitModel(load_body(model_dir, device="cpu"))
    names = sorted(set(TINY_SPLITS["train"]["label"]))
    ids = lambda labels: np.asarray([names.index(label) for label in labels])  # noqa: E731
    head = LogisticRegression(**head_params).fit(body.encode(TINY_SPLITS["train"]["text"]),
                                                 ids(TINY_SPLITS["train"]["label"]))
    report = classification_report(head.predict(body.encode(TINY_SPLITS[split]["text"])),
                                   ids(TINY_SPLITS[split]["label"]), names)
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}


def test_the_probe_is_scored_beside_the_model_on_every_split(make_job, tiny_model_dir, tiny_splits):
    result = PipelineRun(make_job(test_data=tiny_splits["test"], head_params={"C": 0.05})).run_all()["evaluation"]
    metrics = result.manifest.metrics
    for split in ("eval", "test"):
        assert metrics[split]["probe"] == pytest.approx(expected_probe(tiny_model_dir, split, C=0.05))
    overall = metric_rows(metrics)[0]
    assert overall["probe_accuracy"] == round(metrics["eval"]["probe"]["accuracy"], 4)
    assert [c.split for c in probe_comparisons(metrics)] == ["eval", "test"]


def test_a_model_below_the_probe_is_logged_and_summarised(make_job, tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="setfit_core.pipeline.evaluation_stage"):
        results = PipelineRun(make_job(args=WRECKING_ARGS)).run_all()
    metrics = results["evaluation"].manifest.metrics
    (comparison,) = probe_comparisons(metrics)
    probe = expected_probe(tiny_model_dir, "eval")["accuracy"]
    assert comparison.below and comparison.model == metrics["eval"]["accuracy"] < comparison.probe
    assert comparison.probe == pytest.approx(probe)
    message = (f"fine-tuning did not help on eval: the model's accuracy is {comparison.model:.4f}, below the "
               f"frozen-probe baseline's {probe:.4f}")
    assert message in caplog.text
    stages = {stage: r.to_dict() for stage, r in results.items()}
    summary = summary_markdown("tiny", stages, results["model"].uri, below_probe=[comparison.message()])
    assert "## Fine-tuning did not help" in summary and message in summary
    assert f"| eval | {comparison.model:.4f} |" in summary and f"| {probe:.4f} |" in summary


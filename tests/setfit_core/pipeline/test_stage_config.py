"""Which stage keys change for which change of settings (no training: plans only)."""

from __future__ import annotations

import shutil

import pytest

from setfit_core import TrainingArguments
from setfit_core.losses import LOSSES
from setfit_core.pipeline import PipelineRun, model_identity
from setfit_core.pipeline import stage_config as sc
from tests.setfit_core.pipeline.conftest import TINY_ARGS


def keys(job) -> dict[str, str]:
    return {stage: spec.key for stage, spec in PipelineRun(job).plan.items()}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {stage for stage in a if a[stage] != b.get(stage)}


DOWNSTREAM_OF_HEAD = {"head", "evaluation", "model"}


@pytest.mark.parametrize(
    "change",
    [
        {"head_params": {"C": 0.5}},
        {"args": {**TINY_ARGS, "head_learning_rate": 0.5}},  # unused by the scikit-learn head, still a head setting
        {"args": {**TINY_ARGS, "num_epochs": [1, 7]}},
        {"args": {**TINY_ARGS, "batch_size": [16, 4]}},
        {"args": {**TINY_ARGS, "show_progress_bar": True, "output_dir": "elsewhere", "logging_steps": 3}},
    ],
)
def test_head_only_changes_never_touch_pairs_body_or_embeddings(make_job, change):
    before, after = keys(make_job()), keys(make_job(**change))
    assert changed(before, after) <= DOWNSTREAM_OF_HEAD
    if "head_params" in change:
        assert changed(before, after) == DOWNSTREAM_OF_HEAD


def test_differentiable_head_settings_are_head_only(make_job):
    base = keys(make_job(use_differentiable_head=True))
    for args in ({"head_learning_rate": 0.05}, {"num_epochs": [1, 3]}, {"batch_size": [16, 8]}, {"l2_weight": 0.0}):
        other = keys(make_job(use_differentiable_head=True, args={**TINY_ARGS, **args}))
        assert changed(base, other) == DOWNSTREAM_OF_HEAD


@pytest.mark.parametrize(
    ("args", "first_changed"),
    [
        ({"seed": 1}, "pairs"),
        ({"num_iterations": 3}, "pairs"),
        ({"sampling_strategy": "unique", "num_iterations": None}, "pairs"),
        ({"loss": "ContrastiveLoss"}, "body"),
        ({"body_learning_rate": [3e-5, 1e-5]}, "body"),
        ({"num_epochs": [2, 2]}, "body"),
        ({"batch_size": [8, 2]}, "body"),  # pairs do not depend on the batch size without max_steps
        ({"max_length": 16}, "body"),
    ],
)
def test_body_settings_recompute_from_the_right_stage(make_job, args, first_changed):
    before, after = keys(make_job()), keys(make_job(args={**TINY_ARGS, **args}))
    order = list(before)
    assert changed(before, after) == set(order[order.index(first_changed):])


def test_group_losses_store_rows_not_pairs_and_ignore_pair_settings(make_job):
    supcon = {**TINY_ARGS, "loss": "SupConLoss"}
    plan = PipelineRun(make_job(args=supcon)).plan
    assert plan["pairs"].config == {"kind": "group"}
    assert plan["body"].config["samples_per_label"] == 2
    assert changed(keys(make_job(args=supcon)), keys(make_job(args={**supcon, "num_iterations": 7}))) == set()


def test_margin_is_keyed_only_for_losses_that_use_it(make_job):
    cosine = keys(make_job())
    assert cosine == keys(make_job(args={**TINY_ARGS, "margin": 0.9}))
    triplet = {**TINY_ARGS, "loss": "BatchHardTripletLoss"}
    assert "body" in changed(keys(make_job(args=triplet)), keys(make_job(args={**triplet, "margin": 0.9})))


def test_model_and_data_changes(make_job, tiny_model_dir, tiny_splits, tmp_path):
    base = keys(make_job())
    assert changed(base, keys(make_job(train_data=tiny_splits["test"]))) == set(base)
    # Eval data is read by embeddings and evaluation only (phase-1 evaluation is off by default).
    assert changed(base, keys(make_job(eval_data=tiny_splits["test"]))) == {"embeddings", "head", "evaluation", "model"}
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert keys(make_job(model=str(copy))) == base, "the model is identified by content, not by path"
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert changed(base, keys(make_job(model=str(copy)))) == set(base) - {"pairs"}


def test_eval_only_changes_recompute_only_evaluation(make_job):
    base = keys(make_job())
    assert changed(base, keys(make_job(metric="f1"))) == {"evaluation"}
    assert changed(base, keys(make_job(metric_kwargs={"normalize": False}))) == {"evaluation"}


def test_phase_one_evaluation_puts_eval_data_into_the_body_key(make_job, tiny_splits):
    args = {**TINY_ARGS, "eval_strategy": "steps", "eval_steps": 1}
    plan = PipelineRun(make_job(args=args)).plan
    assert plan["body"].inputs == {"eval": PipelineRun(make_job()).data.hashes["eval"]}
    assert "body" in changed(keys(make_job(args=args)), keys(make_job(args=args, eval_data=tiny_splits["test"])))


def test_end_to_end_head_reads_the_body_and_says_so(make_job):
    plan = PipelineRun(make_job(use_differentiable_head=True, args={**TINY_ARGS, "end_to_end": True})).plan
    assert plan["head"].config["needs_body"] is True and set(plan["head"].parents) == {"body"}
    assert set(plan["model"].parents) == {"head"}  # the head stage holds the fine-tuned body
    plain = PipelineRun(make_job()).plan
    assert plain["head"].config["needs_body"] is False and set(plain["head"].parents) == {"embeddings"}


def test_stage_args_rebuild_exactly_the_keyed_values():
    args = TrainingArguments(batch_size=(8, 4), num_epochs=(2, 3), body_learning_rate=(3e-5, 2e-5), seed=7,
                             max_length=32, loss="BatchHardTripletLoss", margin=0.5, samples_per_label=4,
                             head_learning_rate=0.02, l2_weight=0.0, end_to_end=True)
    body = sc.stage_args(sc.body_config(args, {"sha256": "x"}, with_eval=False))
    assert (body.embedding_batch_size, body.embedding_num_epochs, body.body_embedding_learning_rate) == (8, 2, 3e-5)
    assert (body.seed, body.max_length, body.loss, body.samples_per_label) == (7, 32, args.loss, 4)
    assert sc.loss_config(body)["params"] == {"distance_metric": "cosine_distance", "margin": 0.5}
    head = sc.stage_args(sc.head_config(args, {}, differentiable=True))
    assert (head.classifier_batch_size, head.classifier_num_epochs, head.body_classifier_learning_rate) == (4, 3, 2e-5)
    assert (head.head_learning_rate, head.l2_weight, head.seed, head.end_to_end) == (0.02, 0.0, 7, True)


def test_custom_loss_classes_cannot_be_keyed():
    from setfit_core.losses import CosineSimilarityLoss

    class MyLoss(CosineSimilarityLoss):
        pass

    with pytest.raises(ValueError, match=r"the pipeline needs a built-in loss"):
        sc.loss_config(TrainingArguments(loss=MyLoss))


def test_model_identity_is_cached_and_follows_file_changes(tiny_model_dir, tmp_path, monkeypatch):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    first = model_identity(str(copy))
    sc._IDENTITY_CACHE.clear()
    hashed = []
    monkeypatch.setattr(sc, "sha256_file", lambda p: hashed.append(p) or "0" * 64)
    assert model_identity(str(copy)) == first and hashed == [], "the disk cache answers without hashing"
    (copy / "modules.json").write_text((copy / "modules.json").read_text() + "\n")
    assert model_identity(str(copy)) != first and hashed, "an edited file is hashed again"


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_rebuilds_from_its_stage_config(loss):
    config = sc.body_config(TrainingArguments(loss=loss, margin=0.4), {"sha256": "x"}, with_eval=False)
    assert sc.loss_config(sc.stage_args(config)) == config["loss"]


def test_loss_params_and_the_fast_preset_are_keyed(make_job):
    supcon = {**TINY_ARGS, "loss": "SupConLoss"}
    warmer = {**supcon, "loss_params": {"temperature": 0.2}}
    assert "body" in changed(keys(make_job(args=supcon)), keys(make_job(args=warmer)))
    fast = PipelineRun(make_job(args={**TINY_ARGS, "preset": "fast"})).plan["body"].config
    assert fast["group_sampling"] == "label_balanced" and fast["loss"]["name"] == "SupConLoss"
    rebuilt = sc.stage_args(fast)
    assert (rebuilt.sampling_strategy, rebuilt.loss_name) == ("label_balanced", "SupConLoss")
    assert rebuilt.embedding_batch_size == fast["batch_size"] and rebuilt.loss_params == fast["loss"]["params"]


def test_every_training_argument_is_keyed_or_declared_unused():
    from setfit_core.args import field_names

    classified = set(sc.UNKEYED_ARGS).union(*sc.ARGS_BY_STAGE.values())
    assert set(field_names()) == classified, "classify new TrainingArguments fields in stage_config.ARGS_BY_STAGE"


@pytest.mark.parametrize("field", sorted(sc.UNKEYED_ARGS))
def test_unkeyed_arguments_change_no_key(make_job, field):
    values = {"output_dir": "x", "show_progress_bar": True, "report_to": "all", "run_name": "r", "logging_dir": "d",
              "logging_first_step": False, "logging_steps": 7, "save_steps": 3, "save_total_limit": 2,
              "metric_for_best_model": "accuracy", "greater_is_better": True, "save_strategy": "epoch",
              "logging_strategy": "no"}
    assert keys(make_job()) == keys(make_job(args={**TINY_ARGS, field: values[field]}))


def test_gradient_checkpointing_reaches_the_body_stage_and_keys_only_when_on(make_job):
    off = sc.body_config(TrainingArguments(), {"sha256": "x"}, with_eval=False)
    on = sc.body_config(TrainingArguments(gradient_checkpointing=True), {"sha256": "x"}, with_eval=False)
    assert "gradient_checkpointing" not in off  # bodies trained before the option keep their keys
    assert sc.stage_args(on).gradient_checkpointing and not sc.stage_args(off).gradient_checkpointing
    assert changed(keys(make_job()), keys(make_job(args={**TINY_ARGS, "gradient_checkpointing": True}))) == {
        "body", "embeddings", "head", "evaluation", "model"}

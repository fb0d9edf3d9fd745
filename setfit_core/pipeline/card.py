"""The model card of a pipeline run: `SetFitModelCardData` filled from the job, its data and its stages.

The export stage writes it as the model directory's ``README.md`` (`export_stage.run_export`), with what a
`Trainer` would record: label examples, hyperparameters, the evaluation stage's metrics and frozen-probe
baseline per split, plus the content hash and row count of every data split. (Phase 1's loss log stays in the
body stage's manifest: reading it would verify, and on S3 download, the body's weights.)

The card is built only when the model stage is computed, and written once with it: like the lineage, it is
not part of the model's key, so a later run that reuses the stage (e.g. only the metric changed) keeps the
card of the run that published it. Nothing in it depends on the clock, so the same run writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from setfit_core.artifacts import ArtifactStore
from setfit_core.model_io.model_card import SetFitModelCardData, base_model_id
from setfit_core.pipeline.data_io import dataset_label
from setfit_core.pipeline.inputs import PipelineData
from setfit_core.pipeline.job import PipelineJob
from setfit_core.pipeline.plan import StageSpec


def run_card_data(job: PipelineJob, data: PipelineData, store: ArtifactStore,
                  plan: Mapping[str, StageSpec]) -> SetFitModelCardData:
    """The card data of the model `plan` exports; its evaluation stage, when planned, must be published already
    (the stages run in plan order)."""
    card = SetFitModelCardData(dataset_name=dataset_label(job.train_data), st_id=base_model_id(job.model))
    card.record_train_data(data.train.texts, data.train.label_ids, data.labels)
    card.set_widget_examples(data.splits["eval"].texts if "eval" in data.splits else data.train.texts)
    card.set_hyperparameters(job.training_args, job.head_params)
    card.set_dataset_hashes(data.hashes, {name: len(split) for name, split in data.splits.items()})
    if "evaluation" in plan:
        evaluation = store.find("evaluation", plan["evaluation"].key)
        if evaluation is None:
            raise RuntimeError(f"the model card needs the metrics of evaluation stage {plan['evaluation'].key[:12]}, "
                               "which is not in the store; run the evaluation stage before the model stage")
        record_evaluation(card, evaluation.metrics)
    return card


def record_evaluation(card: SetFitModelCardData, metrics: Mapping[str, Any]) -> None:
    """The evaluation stage's metrics (`evaluation_stage.score` per split): accuracy, macro-F1 and the metric
    asked for, and the frozen probe's same scores."""
    for split, scores in metrics.items():
        if not isinstance(scores, Mapping):
            continue
        names = dict.fromkeys(("accuracy", "macro_f1", scores.get("metric")))
        card.post_training_eval_results({f"{split}_{name}": scores[name] for name in names if name in scores})
        if isinstance(scores.get("probe"), Mapping):
            card.set_probe_results(scores["probe"], split)


__all__ = ["record_evaluation", "run_card_data"]

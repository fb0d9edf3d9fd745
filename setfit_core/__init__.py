"""setfit_core: SetFit few-shot text classification as a plain library (no Prefect inside).

    from setfit_core import SetFitModel, Trainer, TrainingArguments
    model = SetFitModel.from_pretrained()          # the bundled offline all-MiniLM-L6-v2
    trainer = Trainer(model, TrainingArguments(num_iterations=20), train_dataset=train, eval_dataset=test)
    trainer.train()
    trainer.evaluate()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public names and the module that defines each. Imported on first use, so that light parts of the
# package (e.g. setfit_core.artifacts) load without torch and sentence-transformers.
_EXPORTS = {
    "TrainingArguments": "setfit_core.args",
    "EngineOptions": "setfit_core.engine.options",
    "default_model_path": "setfit_core.model_io.body_loading",
    "SetFitHead": "setfit_core.differentiable_head",
    "SetFitTrainer": "setfit_core.legacy",
    "DistillationSetFitTrainer": "setfit_core.legacy",
    "DistillationTrainer": "setfit_core.distillation",
    "BatchAllTripletLoss": "setfit_core.losses",
    "BatchCosineSimilarityLoss": "setfit_core.losses",
    "BatchHardSoftMarginTripletLoss": "setfit_core.losses",
    "BatchHardTripletLoss": "setfit_core.losses",
    "BatchSemiHardTripletLoss": "setfit_core.losses",
    "ContrastiveLoss": "setfit_core.losses",
    "CosineSimilarityLoss": "setfit_core.losses",
    "SupConLoss": "setfit_core.losses",
    "SetFitModel": "setfit_core.modeling",
    "SetFitModelCardData": "setfit_core.model_io.model_card",
    "make_pairs": "setfit_core.training.sampling",
    "UnsafeHeadError": "setfit_core.model_io.sklearn_head",
    "Trainer": "setfit_core.trainer",
    "check_data_quality": "setfit_core.data_quality",
    "DataWarning": "setfit_core.data_quality",
    "DataQualityError": "setfit_core.data_quality",
    "sample_dataset": "setfit_core.data_helpers",
    "get_templated_dataset": "setfit_core.data_helpers",
    "MLflowTracker": "setfit_core.training.trackers",
    "TensorBoardTracker": "setfit_core.training.trackers",
    "BestRun": "setfit_core.training.hyperparameter_search",
}

__all__ = [
    "BatchAllTripletLoss",
    "BatchCosineSimilarityLoss",
    "BatchHardSoftMarginTripletLoss",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "BestRun",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "DataQualityError",
    "DataWarning",
    "DistillationSetFitTrainer",
    "DistillationTrainer",
    "EngineOptions",
    "MLflowTracker",
    "SetFitHead",
    "SetFitModel",
    "SetFitModelCardData",
    "SetFitTrainer",
    "SupConLoss",
    "TensorBoardTracker",
    "Trainer",
    "TrainingArguments",
    "UnsafeHeadError",
    "check_data_quality",
    "default_model_path",
    "get_templated_dataset",
    "make_pairs",
    "sample_dataset",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'setfit_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from setfit_core.args import TrainingArguments
    from setfit_core.data_helpers import get_templated_dataset, sample_dataset
    from setfit_core.data_quality import DataQualityError, DataWarning, check_data_quality
    from setfit_core.differentiable_head import SetFitHead
    from setfit_core.distillation import DistillationTrainer
    from setfit_core.engine.options import EngineOptions
    from setfit_core.legacy import DistillationSetFitTrainer, SetFitTrainer
    from setfit_core.losses import (
        BatchAllTripletLoss,
        BatchCosineSimilarityLoss,
        BatchHardSoftMarginTripletLoss,
        BatchHardTripletLoss,
        BatchSemiHardTripletLoss,
        ContrastiveLoss,
        CosineSimilarityLoss,
        SupConLoss,
    )
    from setfit_core.model_io.body_loading import default_model_path
    from setfit_core.model_io.model_card import SetFitModelCardData
    from setfit_core.model_io.sklearn_head import UnsafeHeadError
    from setfit_core.modeling import SetFitModel
    from setfit_core.trainer import Trainer
    from setfit_core.training.hyperparameter_search import BestRun
    from setfit_core.training.sampling import make_pairs
    from setfit_core.training.trackers import MLflowTracker, TensorBoardTracker

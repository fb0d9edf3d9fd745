"""A trained model's classes: its label names and class count, and its predictions as head indices.

Read by the `DistillationTrainer` (the teacher's classes) and by `Trainer.evaluate` without a `train_dataset`
(the evaluated model's own classes, as setfit evaluates a trained model). A head fitted on label values
rather than ids (setfit fits its scikit-learn head on the raw labels) is handled in both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from setfit_core.data import LabelEncoder
from setfit_core.differentiable_head import SetFitHead
from setfit_core.modeling import SetFitModel


def trained_classes(model: Any, name: str = "teacher_model") -> tuple[list[Any] | None, int]:
    """`model`'s label names (None where head index == label) and class count; raises unless it is a
    `SetFitModel` with a trained head. `name` is what the errors call the model."""
    if not isinstance(model, SetFitModel):
        raise TypeError(f"{name!r} must be a setfit_core.SetFitModel; got {type(model).__name__}")
    head = model.model_head
    untrained = ValueError(f"{name} has no trained head; train it first, e.g. Trainer(model, args, "
                           "train_dataset=...).train(), or load a trained model")
    if head is None:
        raise untrained
    if isinstance(head, SetFitHead):
        return model.labels, head.out_features
    try:
        check_is_fitted(head)
    except NotFittedError as exc:
        raise untrained from exc
    if model.multi_label:
        return model.labels, len(head.estimators_)
    classes = head.classes_.tolist()
    if model.labels is not None:
        return list(model.labels), len(model.labels)
    # A head fitted on label values (a setfit-trained model without `labels`) predicts those values.
    return (None, len(classes)) if classes == list(range(len(classes))) else (classes, len(classes))


def head_indices(model: SetFitModel, embeddings: torch.Tensor | None, encoder: LabelEncoder,
                 texts: list[str] | None = None, batch_size: int = 64,
                 name: str = "the teacher's predictions") -> np.ndarray:
    """`model`'s predictions as head indices (multi-hot rows for multi-label), from its `embeddings` or, when
    None, from `texts`. A head fitted on label values, not ids, has its values mapped through `encoder`."""
    if embeddings is None:
        raw = np.asarray(model.predict(texts, batch_size=batch_size, as_numpy=True, use_labels=False,
                                       show_progress_bar=False))
    elif isinstance(model.model_head, SetFitHead):
        raw = model.model_head.predict(embeddings.to(model.model_head.device)).cpu().numpy()
    else:
        raw = np.asarray(model.model_head.predict(embeddings.float().cpu().numpy()))
    # Head indices already: multi-hot rows, or ints where the labels are names (or absent).
    if model.multi_label or encoder.labels is None or (np.issubdtype(raw.dtype, np.integer) and model.labels):
        return raw.astype(np.int64)
    return encoder.encode(raw.tolist(), name)

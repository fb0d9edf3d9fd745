"""`SetFitModel.fit` (setfit's): phase 2 alone, on lists, with the body as it is."""

from __future__ import annotations

from typing import Any

from setfit_core.args import TrainingArguments
from setfit_core.data import LabelEncoder, load_labeled
from setfit_core.differentiable_head import SetFitHead
from setfit_core.training.classifier_phase import train_head


def fit_model_head(
    model,
    x_train: list[str],
    y_train: list[Any],
    num_epochs: int,
    batch_size: int | None = None,
    body_learning_rate: float | None = None,
    head_learning_rate: float | None = None,
    end_to_end: bool = False,
    l2_weight: float | None = None,
    max_length: int | None = None,
    show_progress_bar: bool = True,
) -> None:
    """Fit the head of `model` (a `SetFitModel`) on `x_train`/`y_train`; see `SetFitModel.fit`."""
    defaults = TrainingArguments()
    args = TrainingArguments(
        num_epochs=(defaults.embedding_num_epochs, num_epochs),
        batch_size=(defaults.embedding_batch_size, batch_size or defaults.classifier_batch_size),
        body_learning_rate=(defaults.body_embedding_learning_rate,
                            body_learning_rate or defaults.body_classifier_learning_rate),
        head_learning_rate=head_learning_rate or defaults.head_learning_rate,
        end_to_end=end_to_end,
        l2_weight=l2_weight,
        max_length=max_length,
        show_progress_bar=show_progress_bar,
    )
    texts, labels = as_list(x_train, "x_train"), as_list(y_train, "y_train")
    if len(texts) != len(labels):
        raise ValueError(f"x_train has {len(texts)} texts but y_train {len(labels)} labels; give one label per "
                         "text")
    data = load_labeled({"text": texts, "label": labels}, None, "train data (x_train, y_train)")
    if data.multi_label != model.multi_label:
        raise ValueError(
            "y_train holds multi-hot rows but the model has no multi_target_strategy; load it with "
            "multi_target_strategy='one-vs-rest' (or 'multi-output'/'classifier-chain')" if data.multi_label
            else f"the model has multi_target_strategy={model.multi_target_strategy!r} but y_train holds single "
            "labels; give multi-hot rows or drop multi_target_strategy"
        )
    encoder = LabelEncoder.fit(data, model.labels, "y_train")
    head = model.model_head
    if isinstance(head, SetFitHead) and head.out_features != encoder.num_classes:
        raise ValueError(f"the differentiable head has out_features={head.out_features} but y_train has "
                         f"{encoder.num_classes} classes; give it out_features={encoder.num_classes}")
    if encoder.labels is not None and model.labels is None:
        model.labels = list(encoder.labels)
    train_head(model, data.texts, encoder.encode(data.labels, "y_train"), encoder.num_classes, args)


def as_list(values: Any, name: str) -> list[Any]:
    """`values` (a list, array or Series) as a list; a string or a scalar is an error naming `name`."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name!r} must be a list (or array) with one entry per example; got {type(values).__name__}")
    return values.tolist() if hasattr(values, "tolist") else list(values)

"""`DistillationTrainer`: train a smaller student `SetFitModel` to behave like a trained teacher.

Phase 1 trains the student's body on unlabelled pairs of the train texts; the target of a pair is the
teacher's cosine similarity of its two texts. It runs phase 1's own loop (`train_body` with the pairs
given), so the loss, the schedule and every engine speed-up are `Trainer`'s. Phase 2 fits the student's
head, on the student's own embeddings, to the teacher's predicted labels for the same texts.

The teacher encodes the train texts once; its embeddings give the pair targets and, through its head,
the labels phase 2 fits, so both phases read one teacher pass.

Not copied from setfit: its 0.x trainer fitted the student's head on the dataset's own labels unless a
cosine pair loss was chosen, and took the teacher's labels from its head applied to un-normalised
embeddings; 1.2.0 hands string labels of a teacher with `labels` to a student head that expects ids.
Here the student head always fits the teacher's predictions as head indices, and a `label` column in the
train data is never read. Self-pairs (target 1.0 under any body) are not drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from setfit_core.args import TrainingArguments
from setfit_core.data import LabelEncoder, load_labeled, load_texts
from setfit_core.engine.options import EngineOptions
from setfit_core.model_classes import head_indices, trained_classes
from setfit_core.modeling import SetFitModel
from setfit_core.trainer import EncodedSplit, Trainer
from setfit_core.training.classifier_phase import train_head
from setfit_core.training.embedding_phase import ProgressFn, train_body
from setfit_core.training.sampling import PairSet, sample_text_pairs

logger = logging.getLogger(__name__)

_TARGET_CHUNK = 65_536  # pairs whose targets are computed at once: bounds the gathered embedding rows


def distillation_pairs(teacher_embeddings: np.ndarray, seed: int, num_iterations: int | None = None,
                       max_pairs: int = -1) -> PairSet:
    """Pairs of the texts behind `teacher_embeddings` ([n, D]), each with the teacher's cosine similarity
    of its two texts as the target (`sample_text_pairs` draws them)."""
    unit = F.normalize(torch.as_tensor(np.asarray(teacher_embeddings), dtype=torch.float32), dim=1).numpy()
    first, second = sample_text_pairs(len(unit), seed, num_iterations, max_pairs)
    target = np.empty(len(first), dtype=np.float32)
    for start in range(0, len(first), _TARGET_CHUNK):
        part = slice(start, start + _TARGET_CHUNK)
        target[part] = np.einsum("ij,ij->i", unit[first[part]], unit[second[part]])
    return PairSet(first, second, np.clip(target, -1.0, 1.0))


class DistillationTrainer(Trainer):
    """Distil a trained `teacher_model` into `student_model` (setfit's `DistillationTrainer`).

    >>> trainer = DistillationTrainer(teacher, student, TrainingArguments(num_iterations=20),  # doctest: +SKIP
    ...                               train_dataset=unlabelled_texts)
    >>> trainer.train(); trainer.agreement(test_texts)                                     # doctest: +SKIP
    """

    def __init__(
        self,
        teacher_model: SetFitModel,
        student_model: SetFitModel | None = None,
        args: TrainingArguments | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        model_init: Callable[[], SetFitModel] | None = None,
        metric: str | Callable = "accuracy",
        metric_kwargs: dict[str, Any] | None = None,
        column_mapping: Mapping[str, str] | None = None,
        engine: EngineOptions | None = None,
    ) -> None:
        """`train_dataset`: texts, as a list of strings or a dataset with a `text` column; a `label` column
        is not read (the student learns the teacher's labels). `eval_dataset` has `text` and `label` in the
        teacher's labels, for `evaluate()`. The other arguments are `Trainer`'s, for the student."""
        labels, num_classes = trained_classes(teacher_model, "teacher_model")
        super().__init__(student_model, args, None, None, model_init, metric, metric_kwargs,
                         column_mapping=column_mapping, engine=engine)
        self.teacher_model, self.student_model = teacher_model, self.model
        self._check_student(labels, num_classes)
        check_distillation_args(self.args)
        self.encoder = LabelEncoder(labels, num_classes)
        self.train_texts: list[str] | None = None
        if train_dataset is not None:
            self.train_texts, has_labels = load_texts(train_dataset, column_mapping, "train_dataset", min_texts=2)
            if has_labels:
                logger.info("train_dataset's 'label' column is not used: the student learns the teacher's labels")
        self.eval_split = self.encode_split(eval_dataset, "eval_dataset") if eval_dataset is not None else None
        self.pairs: PairSet | None = None  # phase 1's pairs and targets, once it has run
        self._teacher_cache: tuple[np.ndarray, np.ndarray] | None = None

    def _check_student(self, labels: list[Any] | None, num_classes: int) -> None:
        student, teacher = self.model, self.teacher_model
        if student is teacher or student.model_body is teacher.model_body:
            raise ValueError("student_model must be a separate model from teacher_model; load the student anew, "
                             "e.g. SetFitModel.from_pretrained('<smaller body>')")
        if student.multi_label != teacher.multi_label:
            raise ValueError(
                f"teacher_model has multi_target_strategy={teacher.multi_target_strategy!r} but student_model "
                f"{student.multi_target_strategy!r}; load the student with "
                f"multi_target_strategy={teacher.multi_target_strategy!r}"
            )
        given = list(student.labels) if student.labels is not None else None
        if given is not None and (given != (labels if labels is not None else given) or len(given) != num_classes):
            raise ValueError(f"student_model has labels {student.labels} but teacher_model predicts "
                             f"{labels if labels is not None else f'{num_classes} class ids'}; leave the "
                             "student's labels unset: it takes the teacher's")
        self._check_head(num_classes)

    # ---- data -----------------------------------------------------------------------------------
    def encode_split(self, dataset: Any, name: str) -> EncodedSplit:
        """`dataset` with `text` and `label` columns, labels in the teacher's label space."""
        data = load_labeled(dataset, self.column_mapping, name)
        if data.multi_label != self.teacher_model.multi_label:
            raise ValueError(f"{name} and teacher_model must both be single-label or both multi-label")
        return EncodedSplit(data, self.encoder.encode(data.labels, name))

    def _require_texts(self) -> list[str]:
        if self.train_texts is None:
            raise ValueError("DistillationTrainer has no train_dataset; pass train_dataset= (texts) when creating it")
        return self.train_texts

    def teacher_view(self) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's embeddings of the train texts and its predicted head indices for them (multi-hot rows
        for a multi-label teacher); computed once, read by both phases."""
        if self._teacher_cache is None:
            texts = self._require_texts()
            with torch.no_grad():
                embeddings = torch.as_tensor(self.teacher_model.encode(texts, batch_size=64, show_progress_bar=False,
                                                                       as_numpy=False))
                predicted = head_indices(self.teacher_model, embeddings, self.encoder)
            self._teacher_cache = (embeddings.float().cpu().numpy(), predicted)
        return self._teacher_cache

    # ---- training -------------------------------------------------------------------------------
    def train_embeddings(self, args: TrainingArguments | None = None, progress: ProgressFn | None = None) -> None:
        """Phase 1: the student's body learns the teacher's cosine similarities on pairs of the train texts."""
        args = args or self.args
        check_distillation_args(args)
        texts = self._require_texts()
        embeddings, _ = self.teacher_view()
        max_pairs = args.max_steps * args.embedding_batch_size if args.max_steps > 0 else -1
        self.pairs = distillation_pairs(embeddings, args.seed, args.num_iterations, max_pairs)
        if args.eval_strategy != "no" and self.eval_split is not None:
            logger.info("distillation computes no phase-1 eval loss: eval_dataset is used by evaluate()")
        self.model.freeze("head")
        self.model.unfreeze("body")
        # The class ids only shape label-grouped batches, which a pair loss with given pairs never reads.
        self.body_result = train_body(self.model.model_body, texts, np.zeros(len(texts), dtype=np.int64), args,
                                      progress=progress, pairs=self.pairs, engine=self.engine)

    def train_classifier(self, args: TrainingArguments | None = None) -> None:
        """Phase 2: the student's head fits the teacher's predicted labels of the train texts."""
        args = args or self.args
        texts = self._require_texts()
        _, predicted = self.teacher_view()
        if not self.model.multi_label and len(np.unique(predicted)) < 2:
            only = self.encoder.decode(predicted[:1])[0]
            raise ValueError(
                f"teacher_model predicts one class ({only!r}) for all {len(texts)} train texts, so the student's "
                "head has nothing to tell apart; give train texts the teacher sorts into several classes"
            )
        if self.encoder.labels is not None and self.model.labels is None:
            self.model.labels = list(self.encoder.labels)
        train_head(self.model, texts, predicted, self.encoder.num_classes, args)

    # ---- evaluation -----------------------------------------------------------------------------
    def agreement(self, texts: Any = None, batch_size: int = 64) -> float:
        """The share of `texts` (default: the eval_dataset's texts) on which the student predicts the teacher's
        label (for multi-label, the same row)."""
        if texts is None:
            if self.eval_split is None:
                raise ValueError("no texts to compare on: pass agreement(texts) or eval_dataset=")
            texts = self.eval_split.texts
        texts, _ = load_texts(texts, self.column_mapping, "texts")
        kwargs = {"batch_size": batch_size, "as_numpy": True, "use_labels": False, "show_progress_bar": False}
        student = np.asarray(self.model.predict(texts, **kwargs))
        teacher = head_indices(self.teacher_model, None, self.encoder, texts, batch_size)
        same = student == teacher
        return float((same.all(axis=1) if same.ndim == 2 else same).mean())


def check_distillation_args(args: TrainingArguments) -> None:
    """Distillation's targets are similarities of text pairs: only a pair loss can learn them."""
    if getattr(args.loss, "kind", "pair") != "pair":
        raise ValueError(
            f"DistillationTrainer trains the student on text pairs whose target is the teacher's cosine "
            f"similarity, so 'loss' must be a pair loss such as CosineSimilarityLoss; got {args.loss_name!r}"
        )

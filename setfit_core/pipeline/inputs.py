"""The validated data of one pipeline run: train / eval / test splits and the label encoding.

Everything here runs before stage 1, so a wrong column, label or empty split fails in seconds,
not after the body has trained.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from setfit_core.args import TrainingArguments
from setfit_core.data import LabelEncoder
from setfit_core.data_quality import DataWarning, split_warnings, train_warnings
from setfit_core.model_io.body_loading import local_tokenizer
from setfit_core.pipeline.data_io import LoadedSplit, load_split
from setfit_core.tokenization import warn_if_truncated

logger = logging.getLogger(__name__)

SPLITS = ("train", "eval", "test")


@dataclass(frozen=True)
class Split:
    """A validated split with its labels as head indices 0..K-1."""

    name: str
    uri: str
    texts: list[str]
    label_ids: np.ndarray
    content_hash: str

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class PipelineData:
    splits: dict[str, Split]  # "train" always; "eval" / "test" when given
    encoder: LabelEncoder
    warnings: tuple[DataWarning, ...] = ()  # data-quality findings, train first (see setfit_core.data_quality)

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def hashes(self) -> dict[str, str]:
        return {name: split.content_hash for name, split in self.splits.items()}

    @property
    def labels(self) -> list[Any] | None:
        """What head index i means (`LabelEncoder.labels`); None when index == int label."""
        return self.encoder.labels

    @property
    def num_classes(self) -> int:
        return self.encoder.num_classes


def load_pipeline_data(
    train_data: str,
    eval_data: str | None = None,
    test_data: str | None = None,
    column_mapping: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    expected_hashes: Mapping[str, str] | None = None,
    args: TrainingArguments | None = None,
) -> PipelineData:
    """Read and validate every split; labels of eval/test must be known from training.

    ``expected_hashes`` pins the content seen when the run was planned: a file edited while the
    pipeline runs would otherwise give later stages keys that do not match earlier ones. The
    data-quality findings are returned in `PipelineData.warnings`, not logged (`args`: how pairs are
    sampled, for the many-tiny-classes check).
    """
    uris = {"train": train_data, "eval": eval_data, "test": test_data}
    loaded = {
        name: load_split(uri, f"{name}_data", column_mapping, storage_options)
        for name, uri in uris.items()
        if uri is not None
    }
    for split in loaded.values():
        _check_single_label(split)
    _check_pinned(loaded, expected_hashes)
    train = loaded["train"]
    encoder = LabelEncoder.fit(train.data, None, "train_data")
    splits = {
        name: Split(name, s.uri, s.data.texts, encoder.encode(s.data.labels, s.name), s.content_hash)
        for name, s in loaded.items()
    }
    logger.info("data: %s", ", ".join(f"{n} {len(s)} rows" for n, s in splits.items()))
    found = train_warnings(train.data, train.name, args)
    for split in loaded.values():
        if split is not train:
            found += split_warnings(split.data, split.name)
    return PipelineData(splits, encoder, tuple(found))


def warn_long_texts(model: str, data: PipelineData, max_length: int | None) -> None:
    """Warn, per split, how many texts the body will truncate (its max_seq_length, or a smaller max_length)."""
    found = local_tokenizer(model)
    if found is None:
        logger.info("not checking text lengths: %r is not a local directory (its tokenizer is not on disk)", model)
        return
    tokenizer, supported = found
    limit = min(max_length, supported) if max_length and supported else (max_length or supported)
    what = "the body's max_seq_length" if limit == supported else "max_length"
    for name, split in data.splits.items():
        warn_if_truncated(tokenizer, split.texts, limit, f"{name}_data", what)


def _check_single_label(split: LoadedSplit) -> None:
    if split.data.multi_label:
        raise ValueError(
            f"{split.name} {split.uri!r} has multi-label rows (lists of 0/1); the pipeline supports single-label "
            "classification only. Train multi-label models with setfit_core.Trainer and "
            "SetFitModel.from_pretrained(..., multi_target_strategy='one-vs-rest')"
        )


def _check_pinned(loaded: dict[str, LoadedSplit], expected: Mapping[str, str] | None) -> None:
    if expected is None:
        return
    for name, split in loaded.items():
        if expected.get(name) != split.content_hash:
            raise RuntimeError(
                f"{split.name} {split.uri!r} changed while the pipeline was running (content sha256 "
                f"{expected.get(name)} when planned, {split.content_hash} now); rerun the pipeline"
            )
    if extra := sorted(set(expected) - set(loaded)):
        raise RuntimeError(f"the run was planned with splits {extra} that are not given now; rerun the pipeline")

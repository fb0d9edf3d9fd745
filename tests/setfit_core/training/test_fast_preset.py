"""The `fast` preset picks its batches and length from the data: what it picks for a 2-class and a 64-class
training set, and the one line that says so."""

from __future__ import annotations

import numpy as np
import pytest

from setfit_core import TrainingArguments
from setfit_core.training.batches import batch_stream, describe_phase1


def labels_for(classes: int, per_class: int) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


FAST = TrainingArguments(preset="fast")


@pytest.mark.parametrize(("classes", "shots", "per_label", "batch_texts", "steps"), [
    (2, 8, 8, 16, 20),  # binary: every text in every batch, 20 steps (the binary minimum)
    (2, 64, 64, 128, 20),  # 20 passes over 128 texts in batches of 128
    (6, 64, 42, 252, 100),  # three or more labels: at least 100 steps
    (64, 8, 4, 256, 100),  # 64 intents: 4 of each per batch
    (64, 64, 4, 256, 240),  # 20 passes would be 320 steps: capped at 240
])
def test_the_preset_sizes_batches_and_steps_from_the_data(classes, shots, per_label, batch_texts, steps):
    labels = labels_for(classes, shots)
    stream = batch_stream(labels, FAST, kind="group", max_steps=-1)
    assert stream.total_steps == steps
    first = next(stream.batches)
    assert len(first) == batch_texts
    counts = np.bincount(labels[first], minlength=classes)
    assert set(counts) == {per_label}  # every label, equally often


def test_the_summary_line_says_what_was_picked():
    two = describe_phase1(labels_for(2, 8), FAST)
    assert two == ("SupConLoss(temperature=0.05, base_temperature=0.05) on label-balanced batches of 8 texts x 2 "
                   "labels (16 texts), 20 steps (20 passes over 16 texts, within 20–240 for 2 labels), "
                   "body learning rate 5e-05")
    many = describe_phase1(labels_for(64, 8), FAST)
    assert "batches of 4 texts x 64 labels (256 texts), 100 steps (20 passes over 512 texts, within 100–240 for " \
           "64 labels)" in many
    capped = describe_phase1(labels_for(64, 8), FAST.replace(max_steps=7))
    assert "7 steps (max_steps)" in capped


def test_the_default_recipe_is_described_as_setfit_pairs():
    line = describe_phase1(labels_for(2, 8), TrainingArguments())
    assert line.startswith("CosineSimilarityLoss on setfit's pairs (oversampling), 16 pairs a step, 1 epoch(s)")

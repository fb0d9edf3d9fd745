"""Data-quality checks: each finding's exact counts, rows and classes; Trainer logs and keeps them; strict raises."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pandas as pd
import pytest

from setfit_core import DataQualityError, DataWarning, SetFitModel, Trainer, TrainingArguments, check_data_quality
from setfit_core.data import load_labeled
from setfit_core.data_quality import is_blank_text, train_warnings
from setfit_core.training.sampling import make_pairs

GOOD = {"text": ["good", "bad", "nice", "poor"], "label": [1, 0, 1, 0]}


def checks(train, **kwargs) -> dict[str, str]:
    """{check: message} of the findings for `train`."""
    return {w.check: w.message for w in check_data_quality(train, **kwargs)}


@pytest.mark.parametrize("text", [
    "", " ", "   ", "\t\n\r", "\u00a0", "\u3000", "\u2028",   # whitespace and separators
    "\u200b", "\u200c\u200d", "\u2060\ufeff", "\u00ad", "\u200e\u202e", "\U000e0041",  # format characters (Cf)
    "\x00\x07",                                                 # control characters
    "\u3164", "\u115f", "\ufe0f", "\u034f",                     # default-ignorable letters and marks
    " \u200b \ufeff ",
])
def test_blank_texts(text):
    assert is_blank_text(text)


@pytest.mark.parametrize("text", ["a", " a ", "\u200bok", "é", "\u0301", "😀", "0", ".", "ㄱ", "\u2800x"])
def test_texts_with_something_visible_are_not_blank(text):
    assert not is_blank_text(text)


def test_blank_texts_counted_with_their_first_five_rows_and_examples():
    texts = ["ok", "", "fine", "   ", "\u200b", "\u2060\ufeff", "\u00ad", "good", "", "\t"]
    found = checks({"text": texts, "label": [0, 1, 0, 1, 0, 1, 0, 1, 1, 0]})  # both '' labelled 1
    assert found == {"blank-texts": (
        "train_dataset has 7 empty or invisible text(s) at rows [1, 3, 4, 5, 6] and 2 more ('', '   ', '\\u200b'): "
        "only whitespace, zero-width, joiner, BOM, soft-hyphen or other format characters, so the body sees no "
        "words in them. Drop those rows (setfit_core.data_quality.is_blank_text finds them) or give them real text"
    )}


def test_blank_examples_escape_every_invisible_character():
    found = checks({"text": ["\u3164", "\u2060\ufeff", "a", "b"], "label": [0, 1, 0, 1]})
    assert "('\\u3164', '\\u2060\\ufeff')" in found["blank-texts"]


def test_classes_with_one_example_are_named_with_counts_in_data_order():
    train = {"text": ["a", "b", "c", "d", "e", "f"], "label": ["pos", "refund", "pos", "neg", "neg", "cancel"]}
    found = checks(train)
    assert found["single-example-classes"].startswith(
        "train_dataset has 2 class(es) with fewer than 2 examples: 'refund' (1), 'cancel' (1); the only positive "
        "pair of such a class is its one text paired with itself"
    )
    assert found["single-example-classes"].endswith("Add at least one more example of each, or drop these classes")
    assert found["too-few-examples"] == (
        "train_dataset has 6 examples for 4 classes, fewer than 8 (2 per class); add examples until every class "
        "has at least 2"
    )


def test_a_long_list_of_classes_shows_the_first_ten():
    train = {"text": [f"t{i}" for i in range(14)], "label": [0, 0, *range(1, 13)]}
    message = checks(train)["single-example-classes"]
    assert "has 12 class(es) with fewer than 2 examples: 1 (1), 2 (1), " in message
    assert "10 (1) and 2 more;" in message and "11 (1)" not in message


def test_two_examples_per_class_is_enough():
    assert check_data_quality(GOOD) == []
    assert check_data_quality({"text": ["a", "b", "c", "d", "e"], "label": [0, 0, 1, 1, 1]}) == []


def test_many_tiny_classes_report_the_pairs_make_pairs_draws():
    labels = np.repeat(np.arange(101), [2] + [1] * 100)  # 101 classes of at most 2 examples
    train = {"text": [f"t{i}" for i in range(len(labels))], "label": labels.tolist()}
    drawn = len(make_pairs(labels, seed=0))
    message = checks(train)["many-tiny-classes"]
    assert message == (
        f"train_dataset has 101 classes with at most 2 examples each (more than 100): pair sampling "
        f"(sampling_strategy='oversampling') makes {drawn:,} pairs of its 102 texts, {-(-drawn // 16):,} steps per "
        "epoch at batch size 16. Use TrainingArguments(preset=\"fast\") (pipeline: args={\"preset\": \"fast\"}): "
        "label-balanced batches of every class, a fraction of the steps"
    )
    iterations = checks(train, args=TrainingArguments(num_iterations=20, batch_size=32, max_steps=5))
    assert "makes 4,080 pairs of its 102 texts, 128 steps per epoch at batch size 32 (max_steps=5 stops it early)" \
        in iterations["many-tiny-classes"]


def test_many_tiny_classes_needs_more_than_100_of_them_and_pair_sampling():
    hundred = {"text": [f"t{i}" for i in range(100)], "label": list(range(100))}
    assert "many-tiny-classes" not in checks(hundred)
    many = {"text": [f"t{i}" for i in range(300)], "label": list(range(300))}
    assert "many-tiny-classes" in checks(many)
    assert "many-tiny-classes" not in checks(many, args=TrainingArguments(preset="fast"))
    assert "many-tiny-classes" not in checks(many, args=TrainingArguments(loss="BatchAllTripletLoss"))
    three_each = {"text": [f"t{i}" for i in range(3 * 150)], "label": [i // 3 for i in range(3 * 150)]}
    assert check_data_quality(three_each) == []


def test_conflicting_labels_name_the_first_conflict_in_row_order():
    train = {"text": ["nice", "good", "good", "nice", "bad", "bad"], "label": [1, 1, 0, 0, 0, 0]}
    assert checks(train)["conflicting-labels"] == (
        "train_dataset has 2 text(s) that appear with different labels, e.g. 'nice'; check the labelling"
    )


def test_duplicate_columns_of_a_dataframe_read_the_first_and_report_only_used_ones():
    rows = [[text, "x", label, "n", "m"] for text, label in zip(GOOD["text"], GOOD["label"], strict=True)]
    frame = pd.DataFrame(rows, columns=["text", "text", "label", "note", "note"])  # 'note' is never read: no finding
    data = load_labeled(frame)
    assert data.texts == ["good", "bad", "nice", "poor"] and data.duplicate_columns == {"text": (0, 1)}
    assert checks(frame) == {"duplicate-columns": (
        "train_dataset has more than one column named 'text' (positions [0, 1]); only the first of each is read "
        "and the others are ignored. Rename or drop the extra column(s)"
    )}
    mapped = frame.set_axis(["sentence", "sentence", "y", "note", "note"], axis=1)
    found = check_data_quality(mapped, column_mapping={"sentence": "text", "y": "label"})
    assert [w.message.split(";")[0] for w in found] == [
        "train_dataset has more than one column named 'sentence' (positions [0, 1])"]


def test_multi_label_data_gets_the_row_and_text_checks_only():
    data = load_labeled({"text": ["a", "", "c"], "label": [[1, 0, 0], [0, 1, 0], [1, 0, 0]]})
    assert [w.check for w in train_warnings(data, "train_dataset")] == ["blank-texts", "too-few-examples"]


def test_strict_raises_every_finding_in_one_error():
    train = {"text": ["", "bad", "nice", "poor", "meh"], "label": [1, 0, 1, 0, 2]}
    with pytest.raises(DataQualityError) as raised:
        check_data_quality(train, {"text": ["fine", " "], "label": [1, 0]}, strict=True)
    error = raised.value
    assert isinstance(error, ValueError)
    assert [(w.check, w.split) for w in error.warnings] == [
        ("blank-texts", "train_dataset"), ("single-example-classes", "train_dataset"),
        ("too-few-examples", "train_dataset"), ("blank-texts", "eval_dataset")]
    lines = str(error).splitlines()
    assert lines[0] == "strict data checks found 4 problem(s); fix the data, or turn strict off to train anyway:"
    assert lines[1:] == [f"- {w.message}" for w in error.warnings]
    assert check_data_quality(GOOD, strict=True) == []
    copy = pickle.loads(pickle.dumps(error))  # e.g. a failed Prefect or Dask task handing it back
    assert copy.warnings == error.warnings and str(copy) == str(error)


def test_data_errors_come_before_findings():
    with pytest.raises(ValueError, match=r"train_dataset has a single class \(1\)"):
        check_data_quality({"text": ["", "b"], "label": [1, 1]}, strict=True)
    with pytest.raises(ValueError, match=r"eval_dataset has labels \[7\] never seen in training"):
        check_data_quality(GOOD, {"text": [""], "label": [7]}, strict=True)


def test_a_warning_is_plain_data():
    warning = DataWarning("blank-texts", "train_dataset", "message")
    assert str(warning) == "message"
    assert warning.to_dict() == {"check": "blank-texts", "split": "train_dataset", "message": "message"}


# ---- Trainer ----------------------------------------------------------------------------------------


@pytest.fixture
def model(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


def test_trainer_logs_and_keeps_the_findings_of_train_and_eval(model, caplog):
    train = {"text": ["\u200b", *GOOD["text"], "cancel it"], "label": [1, *GOOD["label"], 2]}
    with caplog.at_level(logging.WARNING, logger="setfit_core"):
        trainer = Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset=train,
                          eval_dataset={"text": ["fine", ""], "label": [1, 0]})
    assert [(w.check, w.split) for w in trainer.data_warnings] == [
        ("blank-texts", "train_dataset"), ("single-example-classes", "train_dataset"),
        ("blank-texts", "eval_dataset")]
    logged = [r for r in caplog.records if r.name == "setfit_core.trainer" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in logged] == [w.message for w in trainer.data_warnings]
    assert trainer.data_warnings == check_data_quality(train, {"text": ["fine", ""], "label": [1, 0]})


def test_clean_data_gives_no_findings(model, caplog):
    with caplog.at_level(logging.WARNING, logger="setfit_core"):
        trainer = Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset=GOOD)
    assert trainer.data_warnings == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("setfit_core")] == []


def test_trainer_on_a_dataframe_with_two_text_columns_trains_on_the_first(model, caplog, tiny_args):
    frame = pd.DataFrame(zip(GOOD["text"], ["x", "y", "z", "w"], GOOD["label"], strict=True),
                         columns=["text", "text", "label"])
    trainer = Trainer(model, tiny_args, train_dataset=frame)
    assert trainer.train_split.texts == GOOD["text"]
    assert [w.check for w in trainer.data_warnings] == ["duplicate-columns"]
    trainer.train()  # the warning is all: training runs
    assert set(np.asarray(model.predict(["good", "bad"])).tolist()) <= {0, 1}


def test_five_hundred_classes_of_one_example_warn_at_construction(model, caplog):
    """The 854-second case: found when the Trainer is built, with the fast preset as the fix; nothing trains."""
    train = {"text": [f"request {i}" for i in range(500)], "label": [f"intent-{i}" for i in range(500)]}
    with caplog.at_level(logging.WARNING, logger="setfit_core"):
        trainer = Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset=train)
    assert [w.check for w in trainer.data_warnings] == [
        "single-example-classes", "too-few-examples", "many-tiny-classes"]
    assert 'makes 249,500 pairs of its 500 texts, 15,594 steps per epoch at batch size 16. Use ' \
           'TrainingArguments(preset="fast")' in caplog.text
    with pytest.raises(ValueError, match=r"train_dataset has 500 classes with at most 2 examples each"):
        check_data_quality(train, strict=True)


def test_docstring_examples():
    import doctest

    import setfit_core.data_quality

    result = doctest.testmod(setfit_core.data_quality)
    assert result.attempted >= 1 and result.failed == 0

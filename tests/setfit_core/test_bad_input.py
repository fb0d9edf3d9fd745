"""Every bad input of the library gets a clear error before any training starts."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from setfit_core import SetFitModel, Trainer, TrainingArguments


@pytest.fixture
def model(tiny_model_dir):
    return SetFitModel.from_pretrained(tiny_model_dir, device="cpu")


def make_trainer(model, train, eval_dataset=None, **kwargs):
    return Trainer(model, TrainingArguments(show_progress_bar=False), train_dataset=train,
                   eval_dataset=eval_dataset, **kwargs)


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"text": [], "label": []}, r"train_dataset is empty"),
        ({"text": ["a", "b", "c"], "label": [1, 1, 1]}, r"train_dataset has a single class \(1\); SetFit needs "
                                                        r"at least 2 classes"),
        ({"sentence": ["a", "b"], "label": [0, 1]}, r"train_dataset is missing column\(s\) \['text'\]; found "
                                                    r"columns: \['label', 'sentence'\]"),
        ({"text": ["a", None], "label": [0, 1]}, r"train_dataset column 'text' row 1 is None \(NoneType\); "
                                                 r"every text must be a string"),
        ({"text": ["a", math.nan], "label": [0, 1]}, r"train_dataset column 'text' row 1 is NaN"),
        ({"text": ["a", 3], "label": [0, 1]}, r"row 1 is 3 \(int\); every text must be a string"),
        ({"text": ["a", "b"], "label": [0, "pos"]}, r"train_dataset column 'label' mixes label types \{'int': "
                                                    r"0, 'str': 'pos'\}"),
        ({"text": ["a", "b"], "label": [0.0, 1.0]}, r"holds floats \(row 0: 0.0\); labels must be ints or "
                                                    r"strings.*astype\(int\)"),
        ({"text": ["a", "b"], "label": [0, math.nan]}, r"column 'label' row 1 is NaN"),
    ],
)
def test_bad_training_data(model, train, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(model, train)


def test_dataframe_with_nan_text_is_caught(model):
    df = pd.DataFrame({"text": ["good", None, "bad"], "label": [1, 1, 0]})
    with pytest.raises(ValueError, match=r"row 1 is NaN"):
        make_trainer(model, df)


def test_column_mapping_fixes_and_reports_columns(model):
    data = {"sentence": ["good", "bad", "nice", "poor"], "y": [1, 0, 1, 0]}
    trainer = make_trainer(model, data, column_mapping={"sentence": "text", "y": "label"})
    assert trainer.train_split.texts[0] == "good"
    with pytest.raises(ValueError, match=r"column_mapping names column\(s\) \['sent'\] that train_dataset does "
                                         r"not have"):
        make_trainer(model, data, column_mapping={"sent": "text", "y": "label"})


def test_eval_labels_never_seen_in_training(model, tiny_data):
    eval_data = {"text": ["good", "meh"], "label": [1, 7]}
    with pytest.raises(ValueError, match=r"eval_dataset has labels \[7\] never seen in training; known labels: "
                                         r"\[0, 1\]"):
        make_trainer(model, tiny_data, eval_data)


def test_eval_string_labels_never_seen(model):
    train = {"text": ["good", "bad"] * 2, "label": ["pos", "neg"] * 2}
    with pytest.raises(ValueError, match=r"eval_dataset has labels \['neutral'\] never seen in training"):
        make_trainer(model, train, {"text": ["ok"], "label": ["neutral"]})


def test_out_features_must_equal_class_count(tiny_model_dir, tiny_data):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, head_params={"out_features": 3},
                                        device="cpu")
    with pytest.raises(ValueError, match=r"head_params\['out_features'\] is 3 but the training data has 2 "
                                         r"classes; set out_features=2"):
        make_trainer(model, tiny_data)


def test_model_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"model path '.*nope' does not exist"):
        SetFitModel.from_pretrained(str(missing))


def test_hub_id_offline_points_to_local_or_bundled_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"could not load model 'someone/not-cached-model'.*HF_HUB_OFFLINE is "
                                      r"set.*bundled offline model"):
        SetFitModel.from_pretrained("someone/not-cached-model")


def test_unknown_loss_name():
    with pytest.raises(ValueError, match=r"loss 'TripletLoss' is not a supported loss.*Valid:"):
        TrainingArguments(loss="TripletLoss")


def test_unknown_metric(model, tiny_data):
    with pytest.raises(ValueError, match=r"'metric' must be one of \['accuracy', 'f1'.*got 'auc'"):
        make_trainer(model, tiny_data, metric="auc")


def test_multi_label_data_needs_a_strategy(model):
    with pytest.raises(ValueError, match=r"multi-label rows but the model has no multi_target_strategy"):
        make_trainer(model, {"text": ["a", "b"], "label": [[1, 0], [0, 1]]})


def test_conflicting_duplicate_texts_warn(model, caplog):
    train = {"text": ["good", "good", "bad", "fine"], "label": [1, 0, 0, 1]}
    with caplog.at_level("WARNING"):
        make_trainer(model, train)
    assert "appear with different labels" in caplog.text

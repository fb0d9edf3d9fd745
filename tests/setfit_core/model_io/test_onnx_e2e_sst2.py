"""The ONNX export of the real offline all-MiniLM-L6-v2, trained briefly on sst2, against the torch model on
the whole sst2 test split (1,821 texts): fp32 and int8 agree with the torch model's predictions on >= 99.5% and
>= 99% of texts, with accuracy within 0.5 point (the ONNX issue's bar).

Measured on this model: fp32 agrees on all texts; int8 (smoothed, `setfit_core.model_io.onnx_int8`) on 99.2%
(scikit-learn head) and 99.6% (differentiable head), accuracy -0.16 and +0.33 point. The whole split, not a
sample: a briefly trained body leaves many texts near the decision boundary, and on 500 texts one flip is
0.2 point, so a sample's agreement and accuracy move by more than int8's error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from setfit_core import SetFitModel, Trainer, TrainingArguments
from tests.conftest import few_shot, shared_dataset

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'setfit-pipeline[onnx]'")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

THRESHOLDS = {None: 0.995, "int8": 0.99}
ACCURACY_TOLERANCE = {None: 0.005, "int8": 0.005}


@pytest.fixture(scope="module")
def sst2():
    root = shared_dataset("sst2")
    train = few_shot(pd.read_parquet(root / "train.parquet"), 64, seed=0)
    test = pd.read_parquet(root / "test.parquet")
    return train[["text", "label"]], test.text.tolist(), test.label.to_numpy()


@pytest.fixture(scope="module")
def trained(sst2):
    """{"sklearn": ..., "differentiable": ...}: one briefly trained body (the fast preset), both heads on it."""
    train, _, _ = sst2
    model = SetFitModel.from_pretrained(device="cpu")
    args = TrainingArguments(preset="fast", seed=0, show_progress_bar=False, save_strategy="no")
    Trainer(model, args, train_dataset=train).train()
    differentiable = SetFitModel(model.model_body, use_differentiable_head=True)
    differentiable.fit(train.text.tolist(), train.label.tolist(), num_epochs=16, show_progress_bar=False)
    return {"sklearn": model, "differentiable": differentiable}


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("head", ["sklearn", "differentiable"])
def test_onnx_predictions_agree_with_torch(trained, sst2, tmp_path, head, quantize):
    _, texts, labels = sst2
    model = trained[head]
    loaded = SetFitModel.from_pretrained(model.export_onnx(tmp_path / "m", quantize=quantize), backend="onnx")
    ours = np.asarray(loaded.predict(texts, as_numpy=True))
    theirs = np.asarray(model.predict(texts, as_numpy=True))
    agreement = float((ours == theirs).mean())
    accuracy = {"onnx": float((ours == labels).mean()), "torch": float((theirs == labels).mean())}
    assert agreement >= THRESHOLDS[quantize], (agreement, accuracy)
    assert abs(accuracy["onnx"] - accuracy["torch"]) <= ACCURACY_TOLERANCE[quantize], (agreement, accuracy)
    print(f"{head} {quantize or 'fp32'}: agreement {agreement:.4f}, accuracy {accuracy}")

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from setfit_core import SetFitHead, SetFitModel, Trainer, UnsafeHeadError

TEXTS = ["good movie", "awful film", "i love it"]


def trained(model, data, args):
    Trainer(model, args, train_dataset=data).train()
    return model


@pytest.fixture
def sklearn_model(tiny_model_dir, tiny_data, tiny_args):
    return trained(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"), tiny_data, tiny_args)


@pytest.fixture
def torch_model(tiny_model_dir, tiny_data, tiny_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cpu")
    return trained(model, tiny_data, tiny_args)


def test_predict_returns_class_ids_tensor_or_numpy(sklearn_model):
    out = sklearn_model.predict(TEXTS)
    assert isinstance(out, torch.Tensor) and out.shape == (3,)
    assert isinstance(sklearn_model.predict(TEXTS, as_numpy=True), np.ndarray)
    assert torch.equal(sklearn_model(TEXTS), out)


def test_single_string_gives_single_result(sklearn_model, torch_model):
    for model in (sklearn_model, torch_model):
        assert model.predict("good movie").ndim == 0
        assert model.predict_proba("good movie").shape == (2,)
        assert model.encode("good movie").shape == (32,)


def test_predict_proba_rows_sum_to_one(sklearn_model, torch_model):
    for model in (sklearn_model, torch_model):
        probs = model.predict_proba(TEXTS, as_numpy=True)
        assert probs.shape == (3, 2)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_encode_options(sklearn_model):
    emb = sklearn_model.encode(TEXTS, batch_size=1, show_progress_bar=False)
    assert isinstance(emb, np.ndarray) and emb.shape == (3, 32)
    as_tensor = sklearn_model.encode(TEXTS, as_numpy=False)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_allclose(emb, as_tensor.numpy(), rtol=1e-5, atol=1e-6)


def test_normalize_embeddings(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, normalize_embeddings=True, device="cpu")
    np.testing.assert_allclose(np.linalg.norm(model.encode(TEXTS), axis=1), 1.0, rtol=1e-5)


def test_string_labels_in_and_out(tiny_model_dir, tiny_data, tiny_args):
    data = {"text": tiny_data["text"], "label": ["positive" if y else "negative" for y in tiny_data["label"]]}
    model = trained(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"), data, tiny_args)
    assert model.labels == ["negative", "positive"]
    out = model.predict(TEXTS)
    assert isinstance(out, list) and set(out) <= {"negative", "positive"}
    assert model.predict("good movie") in {"negative", "positive"}
    assert model.predict(TEXTS, use_labels=False).dtype == torch.int64


def test_int_labels_with_label_names(tiny_model_dir, tiny_data, tiny_args):
    model = SetFitModel.from_pretrained(tiny_model_dir, labels=["neg", "pos"], device="cpu")
    trained(model, tiny_data, tiny_args)
    assert set(model.predict(TEXTS)) <= {"neg", "pos"}


def test_non_contiguous_int_labels_come_back_as_given(tiny_model_dir, tiny_data, tiny_args):
    data = {"text": tiny_data["text"], "label": [10 if y else 3 for y in tiny_data["label"]]}
    model = trained(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"), data, tiny_args)
    assert set(model.predict(TEXTS)) <= {3, 10}


@pytest.mark.parametrize("fixture", ["sklearn_model", "torch_model"])
def test_save_and_load_give_identical_predictions(fixture, request, tmp_path):
    model = request.getfixturevalue(fixture)
    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    head_file = "model_head.safetensors" if fixture == "torch_model" else "model_head.skops"
    assert {"config_setfit.json", head_file, "modules.json", "model.safetensors"} <= files
    assert not any(name.endswith(".pkl") for name in files)
    config = json.loads((tmp_path / "m" / "config_setfit.json").read_text())
    assert config["head"]["type"] == ("differentiable" if fixture == "torch_model" else "sklearn")
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert type(loaded.model_head) is type(model.model_head)
    assert torch.equal(loaded.predict(TEXTS), model.predict(TEXTS))
    torch.testing.assert_close(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))


@pytest.mark.parametrize("strategy", ["one-vs-rest", "multi-output", "classifier-chain"])
def test_multi_label_round_trip(strategy, tiny_model_dir, tiny_args, tmp_path):
    texts = ["good movie", "bad film", "good film", "bad movie", "great plot", "awful plot", "nice actor", "poor actor"]
    labels = [[1, 1, 0], [0, 1, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]
    model = SetFitModel.from_pretrained(tiny_model_dir, multi_target_strategy=strategy, device="cpu")
    trained(model, {"text": texts, "label": labels}, tiny_args)
    pred = model.predict(texts, as_numpy=True)
    assert pred.shape == (8, 3)
    model.save_pretrained(tmp_path / "m")
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert loaded.multi_target_strategy == strategy
    np.testing.assert_array_equal(loaded.predict(texts, as_numpy=True), pred)


def test_setfit_pickle_needs_explicit_trust(sklearn_model, tmp_path):
    sklearn_model.save_pretrained(tmp_path / "m", setfit_compatible=True)
    config = json.loads((tmp_path / "m" / "config_setfit.json").read_text())
    assert set(config) == {"normalize_embeddings", "labels"}  # what setfit 1.x's constructor accepts
    (tmp_path / "m" / "model_head.skops").unlink()  # leave only the pickle, as setfit 1.x writes it
    with pytest.raises(UnsafeHeadError, match=r"model_head.pkl.*trust_pickle=True"):
        SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu", trust_pickle=True)
    assert torch.equal(loaded.predict(TEXTS), sklearn_model.predict(TEXTS))


def test_setfit_1_2_loads_a_model_saved_by_setfit_core(sklearn_model, tmp_path):
    setfit = pytest.importorskip("setfit", reason="the bench extra (setfit==1.2.0) is not installed")
    sklearn_model.save_pretrained(tmp_path / "m", setfit_compatible=True)
    theirs = setfit.SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    ours = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    np.testing.assert_array_equal(np.asarray(theirs.predict(TEXTS)), ours.predict(TEXTS, as_numpy=True))


def _with_head(model, head):
    """`model` (its body untrained is fine) with `head` fitted on its embeddings of the tiny data."""
    texts = ["good movie", "great film", "nice plot", "i love it", "bad movie", "awful film", "poor plot", "i hate it"]
    model.model_head = head.fit(model.encode(texts), [1, 1, 1, 1, 0, 0, 0, 0])
    return model


def test_setfit_compatible_saves_an_svc_head_that_setfit_1_2_loads(tiny_model_dir, tmp_path):
    from sklearn.svm import SVC

    model = _with_head(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"), SVC())
    model.save_pretrained(tmp_path / "m", setfit_compatible=True)
    assert {"model_head.skops", "model_head.pkl"} <= {p.name for p in (tmp_path / "m").iterdir()}
    ours = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")  # the safe copy, not the pickle
    assert type(ours.model_head) is SVC
    np.testing.assert_array_equal(ours.predict(TEXTS, as_numpy=True), model.predict(TEXTS, as_numpy=True))
    setfit = pytest.importorskip("setfit", reason="the bench extra (setfit==1.2.0) is not installed")
    theirs = setfit.SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert type(theirs.model_head) is SVC
    np.testing.assert_array_equal(np.asarray(theirs.predict(TEXTS)), model.predict(TEXTS, as_numpy=True))


def test_a_forest_head_loads_once_its_tree_type_is_trusted(tiny_model_dir, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    model = _with_head(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"),
                       RandomForestClassifier(n_estimators=3, random_state=0))
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(UnsafeHeadError, match=r"model_head.skops holds types.*trust_head_types=\['sklearn.tree"):
        SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu",
                                         trust_head_types=["sklearn.tree._tree.Tree"])
    torch.testing.assert_close(loaded.predict_proba(TEXTS), model.predict_proba(TEXTS))


def test_setfit_compatible_refuses_the_torch_head(torch_model, tmp_path):
    with pytest.raises(ValueError, match=r"setfit_compatible=True supports the scikit-learn head only"):
        torch_model.save_pretrained(tmp_path / "m", setfit_compatible=True)


def test_plain_sentence_transformers_dir_gets_a_fresh_head(tiny_model_dir):
    model = SetFitModel.from_pretrained(tiny_model_dir, head_params={"C": 0.5}, device="cpu")
    assert model.model_head.C == 0.5


def test_head_out_features_checked_at_construction(tiny_model_dir):
    with pytest.raises(ValueError, match=r"'out_features' must be an int >= 2"):
        SetFitHead(in_features=8, out_features=1)


def test_bundled_hub_id_maps_to_the_offline_model(monkeypatch):
    from setfit_core.model_io.body_loading import default_model_path, resolve_model_location

    assert resolve_model_location("sentence-transformers/all-MiniLM-L6-v2") == default_model_path()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
def test_head_trained_on_gpu_loads_and_runs_on_cpu(tiny_model_dir, tiny_data, tiny_args, tmp_path):
    model = SetFitModel.from_pretrained(tiny_model_dir, use_differentiable_head=True, device="cuda")
    trained(model, tiny_data, tiny_args)
    model.save_pretrained(tmp_path / "m")
    loaded = SetFitModel.from_pretrained(str(tmp_path / "m"), device="cpu")
    assert loaded.model_head.device.type == "cpu"
    assert torch.equal(loaded.predict(TEXTS), model.predict(TEXTS).cpu())

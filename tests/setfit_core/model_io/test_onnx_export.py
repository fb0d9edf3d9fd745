"""`SetFitModel.export_onnx` and `from_pretrained(..., backend="onnx")` on the tiny model: both heads, the
normalisation kept, int8, bad arguments, atomic writes, the missing extra."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from setfit_core import SetFitModel, Trainer
from setfit_core.model_io import onnx_export
from setfit_core.model_io.onnx_format import ONNX_FILES

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'setfit-pipeline[onnx]'")

# Lengths from 1 to 12 words, so batches are padded and a text alone is not.
TEXTS = ["good", "awful film", "i love it", "very bad actor and a poor plot", "so happy", "  GREAT  ",
         "this film was not good at all and i hate the plot and the actor very much", "terrible", "fine film",
         "the app crashes on login", "", "nice"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(single_torch_thread):
    """The tiny model gains nothing from threads (see `single_torch_thread`)."""


def _trained(model, data, args):
    Trainer(model, args, train_dataset=data).train()
    return model


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    """{"sklearn": ..., "differentiable": ...}, trained once for the module."""
    from setfit_core import TrainingArguments
    from tests.conftest import TINY_SPLITS

    data = {"text": TINY_SPLITS["train"]["text"], "label": TINY_SPLITS["train"]["label"]}
    args = TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0, num_epochs=(1, 2),
                             save_strategy="no")
    return {
        "sklearn": _trained(SetFitModel.from_pretrained(tiny_model_dir, device="cpu"), data, args),
        "differentiable": _trained(SetFitModel.from_pretrained(tiny_model_dir, device="cpu",
                                                               use_differentiable_head=True), data, args),
    }


@pytest.mark.parametrize("head", ["sklearn", "differentiable"])
def test_an_fp32_export_predicts_what_the_torch_model_predicts(models, head, tmp_path):
    model = models[head]
    out = model.export_onnx(tmp_path / "onnx-model")
    loaded = SetFitModel.from_pretrained(out, backend="onnx")
    assert loaded.backend == "onnx" and model.backend == "torch"
    assert type(loaded.model_head) is type(model.model_head) and loaded.labels == model.labels
    assert list(loaded.predict(TEXTS)) == list(model.predict(TEXTS))
    np.testing.assert_allclose(loaded.predict_proba(TEXTS, as_numpy=True), model.predict_proba(TEXTS, as_numpy=True),
                               atol=1e-5)
    embeddings = loaded.encode(TEXTS)  # a torch tensor for the differentiable head, as from the torch model
    assert type(embeddings) is type(model.encode(TEXTS))
    np.testing.assert_allclose(np.asarray(embeddings), np.asarray(model.encode(TEXTS)), atol=1e-5)


def test_the_directory_is_a_whole_model_with_the_graph_and_its_entry(models, tmp_path):
    out = tmp_path / "m"
    models["sklearn"].export_onnx(out)
    config = json.loads((out / "config_setfit.json").read_text())
    assert config["labels"] == ["negative", "positive"] and config["head"] == {"type": "sklearn"}
    entry = config["onnx"]
    assert entry["file"] == ONNX_FILES[None] and (out / entry["file"]).is_file()
    assert entry["quantize"] is None and entry["opset"] == onnx_export.DEFAULT_OPSET and entry["normalized"] is False
    assert set(entry["inputs"]) <= {"input_ids", "attention_mask", "token_type_ids"} and entry["dimension"] == 32
    assert f"(`{entry['file']}`)" in (out / "README.md").read_text()  # the card says how to load the graph
    torch_again = SetFitModel.from_pretrained(str(out), device="cpu")  # still a torch model directory too
    assert list(torch_again.predict(TEXTS)) == list(models["sklearn"].predict(TEXTS))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp directory left


def test_normalize_embeddings_is_in_the_graph(tiny_model_dir, models, tmp_path):
    model = models["sklearn"]
    normalized = SetFitModel(model.model_body, model.model_head, normalize_embeddings=True, labels=model.labels)
    loaded = SetFitModel.from_pretrained(normalized.export_onnx(tmp_path / "n"), backend="onnx")
    assert loaded.model_body.normalized
    embeddings = loaded.encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embeddings, normalized.encode(TEXTS), atol=1e-5)


def test_a_normalize_module_of_the_body_is_in_the_graph(tiny_model_dir, models, tmp_path):
    """setfit's export drops the body's Normalize module; this one keeps it."""
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6; older releases only have sentence_transformers.models
        from sentence_transformers.sentence_transformer.modules import Normalize
    except ImportError:
        from sentence_transformers.models import Normalize

    base = models["sklearn"].model_body
    body = SentenceTransformer(modules=[*base.children(), Normalize()], device="cpu")
    model = SetFitModel(body, models["sklearn"].model_head, labels=models["sklearn"].labels)
    loaded = SetFitModel.from_pretrained(model.export_onnx(tmp_path / "n"), backend="onnx")
    assert loaded.model_body.normalized and not loaded.normalize_embeddings
    np.testing.assert_allclose(np.linalg.norm(loaded.encode(TEXTS), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(loaded.encode(TEXTS), model.encode(TEXTS), atol=1e-5)


def test_attention_is_traced_in_its_plain_form_and_the_callers_model_keeps_its_own(models, tmp_path, monkeypatch):
    """The plain attention traces to fewer ops than torch's fused one, which onnxruntime runs faster; only the
    export's copy is switched."""
    import onnx

    model = models["sklearn"]
    auto_model = model.model_body[0].auto_model
    before = auto_model.config._attn_implementation
    copy = onnx_export.SentenceEmbedding(model.model_body, ("input_ids", "attention_mask"), False)
    assert copy.body[0].auto_model.config._attn_implementation == "eager"
    plain = onnx.load(str(Path(model.export_onnx(tmp_path / "plain")) / ONNX_FILES[None]))
    assert auto_model.config._attn_implementation == before

    if before != "eager":  # the fused form, traced for comparison
        monkeypatch.setattr(onnx_export, "eager_attention", lambda body: None)
        fused = onnx.load(str(Path(model.export_onnx(tmp_path / "fused")) / ONNX_FILES[None]))
        assert len(plain.graph.node) < len(fused.graph.node)


def test_an_int8_export_is_smaller_and_close(models, tmp_path):
    model = models["sklearn"]
    fp32 = tmp_path / "fp32"
    int8 = tmp_path / "int8"
    model.export_onnx(fp32)
    model.export_onnx(int8, quantize="int8")
    assert not (int8 / ONNX_FILES[None]).exists()
    assert (int8 / ONNX_FILES["int8"]).stat().st_size < (fp32 / ONNX_FILES[None]).stat().st_size
    loaded = SetFitModel.from_pretrained(str(int8), backend="onnx")
    ours, theirs = loaded.encode(TEXTS), model.encode(TEXTS)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosine.min() > 0.98


def test_exporting_again_replaces_an_earlier_export(models, tmp_path):
    out = tmp_path / "m"
    models["sklearn"].export_onnx(out)
    models["sklearn"].export_onnx(out, quantize="int8")
    assert json.loads((out / "config_setfit.json").read_text())["onnx"]["quantize"] == "int8"
    assert not (out / ONNX_FILES[None]).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"quantize": "int4"}, r"'quantize' must be None \(fp32\) or 'int8'; got 'int4'"),
    ({"opset": 9}, r"'opset' must be None \(default 17\) or an int from 14 to \d+; got 9"),
    ({"opset": "17"}, r"'opset' must be .*got '17'"),
])
def test_bad_arguments_fail_before_anything_is_written(models, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models["sklearn"].export_onnx(tmp_path / "m", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_an_export_is_never_overwritten(models, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not an ONNX export; pass a new directory"):
        models["sklearn"].export_onnx(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_failed_export_leaves_nothing_behind(models, tmp_path, monkeypatch):
    def unfaithful(*args, **kwargs):
        raise RuntimeError("export_onnx: the ONNX graph's embeddings differ")

    monkeypatch.setattr(onnx_export, "check_graph", unfaithful)
    with pytest.raises(RuntimeError, match="differ"):
        models["sklearn"].export_onnx(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_backend_onnx_needs_an_export(models, tmp_path):
    models["sklearn"].save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(ValueError, match=r"has no ONNX export .*export_onnx\(directory\).*backend='torch'"):
        SetFitModel.from_pretrained(str(tmp_path / "plain"), backend="onnx")
    with pytest.raises(ValueError, match=r"'backend' must be one of \['torch', 'onnx'\]; got 'tensorrt'"):
        SetFitModel.from_pretrained(str(tmp_path / "plain"), backend="tensorrt")


def test_an_onnx_model_predicts_only(models, tmp_path, tiny_args):
    loaded = SetFitModel.from_pretrained(models["sklearn"].export_onnx(tmp_path / "m"), backend="onnx")
    with pytest.raises(ValueError, match="backend='onnx', which predicts only"):
        Trainer(loaded, tiny_args, train_dataset={"text": ["a", "b"], "label": [0, 1]})
    with pytest.raises(ValueError, match="is saved already"):
        loaded.save_pretrained(str(tmp_path / "again"))
    with pytest.raises(ValueError, match="exported already"):
        loaded.export_onnx(tmp_path / "again")


def test_without_the_extra_the_error_names_it(models, tmp_path, monkeypatch):
    real = importlib.import_module

    def import_module(name, *args):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(ImportError, match=r"export_onnx needs onnxruntime.*pip install 'setfit-pipeline\[onnx\]'"):
        models["sklearn"].export_onnx(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []

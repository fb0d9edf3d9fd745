"""The int8 graph's preparation on the tiny model: smoothing is exact in fp32, it touches only the MatMuls that
get quantized, and an int8 graph too far from fp32 is refused with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from setfit_core import SetFitModel, Trainer, TrainingArguments
from setfit_core.model_io import onnx_int8
from setfit_core.model_io.onnx_format import ONNX_FILES, OUTPUT_NAME
from setfit_core.tokenization import tokenize

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed: pip install 'setfit-pipeline[onnx]'")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'setfit-pipeline[onnx]'")

TEXTS = ["good", "awful film", "i love it", "very bad actor and a poor plot", "so happy", "terrible"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(single_torch_thread):
    """The tiny model gains nothing from threads (see `single_torch_thread`)."""


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """(model, its fp32 graph as loaded by onnx, the graph inputs of TEXTS)."""
    from tests.conftest import TINY_SPLITS

    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    args = TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0, num_epochs=(1, 2), save_strategy="no")
    Trainer(model, args, train_dataset=dict(TINY_SPLITS["train"])).train()
    out = tmp_path_factory.mktemp("fp32") / "m"
    model.export_onnx(out)
    graph = onnx.load(str(out / ONNX_FILES[None]))
    names = {i.name for i in graph.graph.input}
    features = {k: v.numpy() for k, v in tokenize(model.model_body, TEXTS, device=torch.device("cpu")).items()
                if k in names}
    return model, graph, features


def _embed(graph, features):
    return ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [OUTPUT_NAME], features)[0]


def test_smoothing_leaves_the_fp32_embeddings_as_they_were(exported):
    _, graph, features = exported
    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(graph)
    excluded = onnx_int8.down_projections(smoothed.graph)
    onnx_int8.smooth(smoothed, features, excluded)
    np.testing.assert_allclose(_embed(smoothed, features), _embed(graph, features), atol=1e-5)


def test_smoothing_divides_each_quantized_input_once_and_never_a_down_projection(exported):
    _, graph, features = exported
    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(graph)
    excluded = onnx_int8.down_projections(smoothed.graph)
    groups = onnx_int8.weight_matmuls(graph.graph)
    # The tiny BERT: per layer Q/K/V (one input), the attention output, the feed-forward up and down projections.
    assert len(excluded) == 2 and len(groups) == 2 * 4
    onnx_int8.smooth(smoothed, features, excluded)
    muls = [n for n in smoothed.graph.node if n.op_type == "Mul" and n.name.endswith("_smooth")]
    assert len(muls) == len(groups) - len(excluded)
    downs = [n for n in smoothed.graph.node if n.name in excluded]
    assert all(not n.input[0].endswith("_smoothed") for n in downs)
    factors = [onnx.numpy_helper.to_array(i) for i in smoothed.graph.initializer if i.name.endswith("_smoothing")]
    assert len(factors) == len(muls) and all((f <= 1).all() for f in factors)  # channels shrink, never grow


def test_an_int8_graph_too_far_from_fp32_is_refused(exported, tmp_path, monkeypatch):
    model, _, _ = exported
    monkeypatch.setattr(onnx_int8, "MIN_COSINE", 1.01)
    with pytest.raises(RuntimeError, match=r"int8 graph's embeddings are as far as cosine .* quantize=None"):
        model.export_onnx(tmp_path / "m", quantize="int8")
    assert list(tmp_path.iterdir()) == []

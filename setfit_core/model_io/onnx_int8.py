"""The int8 graph of `export_onnx(quantize="int8")`: smoothed, then dynamically quantized by onnxruntime.

- **Dynamic quantization**: onnxruntime's `quantize_dynamic` turns each weight MatMul into an int8 one: the
  weight per output channel at export, the activation per batch at run time, with one uint8 scale for the
  whole activation tensor. That one scale is the weak point: a transformer's LayerNorm outputs have a few
  outlier channels (on MiniLM, channel 99 reaches ~28 where the median channel reaches ~2), they set the
  scale, and the other channels are left a handful of levels.
- **Smoothing** (SmoothQuant, Xiao et al. 2023): each quantized MatMul's input channel j is divided by s_j
  and its weight row j multiplied by s_j, exact in real arithmetic; the outliers move into the weights,
  whose per-channel scales absorb them. ``s = max|x|^0.7 / max|W|^0.3`` per channel, from the activations of
  `CALIBRATION_TEXTS`, divided by its median and floored at 1: only channels above the median shrink, so a
  channel that the calibration texts happen to leave small is never amplified. The division is one `Mul`
  per MatMul input (a LayerNorm output also feeds the residual, so it cannot be folded into the LayerNorm).
- **What stays float**: the feed-forward down-projections (`down_projections`). Their inputs, GELU outputs,
  are sparse and heavy-tailed, which one scale per tensor serves badly whether smoothed or not: quantizing
  them took MiniLM's embedding error from 0.00055 to ~0.002 (1 - cosine). That costs speed (with them int8
  would run ~1.8x fp32's texts/s, without them ~1.4x) and buys the agreement goal. Gather (the embedding
  table) is a lookup, not a product.

Measured on MiniLM trained on sst2 (four models, the whole test split): 1 - cosine to the fp32 embeddings
0.0035 -> 0.00055; predictions agreeing with the torch model's 97.4-99.0% -> 99.0-99.6%, both head kinds;
the Muls cost ~2% of int8's speed. Tried and dropped (docs/performance.md, "int8: what was tried"): per-tensor weights,
reduce_range, uint8 weights, static activation scales, onnxruntime's 8-bit MatMulNBits (as accurate, but
slower than fp32 here), keeping the value projections float too (a third less error, 5% less speed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Varied English texts, lengths 1 to ~20 words. The outlier channels are the model's more than the data's: calibrating
# on these or on 256 sst2 training texts gave the same int8 error on the sst2 test split.
CALIBRATION_TEXTS = (
    "The package arrived two days late and the box was damaged.",
    "Can you tell me how to reset my password?",
    "I absolutely loved this movie, the acting was superb!",
    "What time does the store open on Sundays?",
    "The quarterly report shows revenue grew by 12 percent.",
    "This is the worst customer service I have ever experienced.",
    "Please cancel my subscription effective immediately.",
    "The weather will be sunny with a light breeze in the afternoon.",
    "He walked slowly along the river, thinking about the letter.",
    "Does this laptop support charging over USB-C?",
    "The new update broke the login page on Android devices.",
    "Thank you so much, the team was incredibly helpful.",
    "Scientists discovered a new species of frog in the rainforest.",
    "I'm not sure whether the plot twist worked, but the music was great.",
    "Set an alarm for 7 am tomorrow.",
    "The hotel room was clean, but the walls were paper thin.",
    "Why was I charged twice for the same order?",
    "A remarkably dull film that never finds its footing.",
    "The committee will meet next Tuesday to discuss the budget.",
    "OK",
    "Play some relaxing jazz music in the kitchen.",
    "Stocks fell sharply after the central bank raised interest rates.",
    "It's a charming, funny and ultimately moving story about friendship.",
    "My order number is 48213 and it still hasn't shipped.",
    "How many calories are in a banana?",
    "The software crashes every time I try to export a PDF file larger than 10 MB.",
    "Not bad at all.",
    "The museum's new exhibit explores the history of ancient trade routes across the desert.",
    "I would not recommend this product to anyone.",
    "Turn off the lights in the living room.",
    "The referee's decision in the final minute sparked outrage among the fans.",
    "Where can I find the terms and conditions?",
)
# SmoothQuant's migration strength: 0.5 left twice the error on MiniLM, 0.6-0.8 were alike.
SMOOTHING_ALPHA = 0.7
# Least cosine between an int8 embedding and its fp32 one on the calibration texts (measured: > 0.995); below
# it the graph is broken, not merely coarse, and nothing is written.
MIN_COSINE = 0.95


def quantize_int8(source: Path, target: Path, features: dict[str, np.ndarray], output: str) -> None:
    """Write `target`: the fp32 graph `source`, smoothed (`smooth`) on `features` (the calibration texts'
    graph inputs), its weight MatMuls but the down-projections dynamically quantized to int8 per channel;
    checked against `source` on `features` (`check_int8`)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = source.with_name(f"{source.stem}.prepared.onnx")
    smoothed = source.with_name(f"{source.stem}.smoothed.onnx")
    try:
        # onnxruntime's recommended preparation (shape inference, basic graph optimisation); its symbolic shape
        # inference gives up on a traced BERT's dynamic shapes, and ONNX's own suffices for MatMul weights.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        excluded = down_projections(model.graph)
        smooth(model, features, excluded)
        onnx.save(model, str(smoothed))
        quantize_dynamic(str(smoothed), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded)
    finally:
        prepared.unlink(missing_ok=True)
        smoothed.unlink(missing_ok=True)
    check_int8(source, target, features, output)


def weight_matmuls(graph) -> dict[str, list]:
    """MatMul nodes with a constant 2-D weight, grouped by their activation input (Q, K and V share one)."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    groups: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def down_projections(graph) -> list[str]:
    """Weight MatMuls that map more features to fewer (the feed-forward blocks' second layer). Found by shape,
    not by name, so any architecture works."""
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    return [node.name for nodes in weight_matmuls(graph).values() for node in nodes
            if shapes[node.input[1]][0] > shapes[node.input[1]][1]]


def smooth(model, features: dict[str, np.ndarray], excluded: list[str]) -> None:
    """Smooth, in place, the input of every group of weight MatMuls that will be quantized (none in `excluded`)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    groups = {t: nodes for t, nodes in weight_matmuls(graph).items() if not any(n.name in excluded for n in nodes)}
    maxima = channel_maxima(model, list(groups), features)
    weights = {init.name: init for init in graph.initializer}
    muls = []
    for tensor, nodes in groups.items():
        arrays = [numpy_helper.to_array(weights[n.input[1]]) for n in nodes]
        w_max = np.max([np.abs(a).max(axis=1) for a in arrays], axis=0)
        raw = np.maximum(maxima[tensor], 1e-5) ** SMOOTHING_ALPHA / np.maximum(w_max, 1e-5) ** (1 - SMOOTHING_ALPHA)
        scale = np.maximum(raw / np.median(raw), 1.0).astype(np.float32)
        smoothed = f"{tensor}_smoothed"
        graph.initializer.append(numpy_helper.from_array(1.0 / scale, f"{tensor}_smoothing"))
        muls.append((nodes[0], helper.make_node("Mul", [tensor, f"{tensor}_smoothing"], [smoothed],
                                                name=f"{tensor}_smooth")))
        for node, array in zip(nodes, arrays, strict=True):
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(array * scale[:, None], node.input[1]))
            node.input[0] = smoothed
    for first_user, mul in muls:  # keep the graph topologically sorted: each Mul right before its first user
        graph.node.insert(list(graph.node).index(first_user), mul)


def channel_maxima(model, tensors: list[str], features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """max |value| per channel (last axis) of each of `tensors` when `model` runs on `features`."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(tensors, features)
    return {t: np.abs(v.reshape(-1, v.shape[-1])).max(axis=0) for t, v in zip(tensors, values, strict=True)}


def check_int8(fp32: Path, int8: Path, features: dict[str, np.ndarray], output: str) -> None:
    """A RuntimeError unless every int8 embedding of `features` is within `MIN_COSINE` of its fp32 one."""
    import onnxruntime as ort

    ours, theirs = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run([output], features)[0]
                    for p in (int8, fp32))
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    if not cosine.min() >= MIN_COSINE:
        raise RuntimeError(f"export_onnx: the int8 graph's embeddings are as far as cosine {cosine.min():.3f} from "
                           f"the fp32 graph's (allowed {MIN_COSINE}); this body does not quantize well, so nothing "
                           "was written. Export it with quantize=None (fp32)")

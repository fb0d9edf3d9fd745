"""Prediction benchmark runs (compare_setfit.py --predict), each in a fresh subprocess.

- ``predict-prepare``: trains one model with setfit_core (setfit's default recipe, the run's few-shot sample)
  and writes it three ways: ``torch/`` (`save_pretrained(setfit_compatible=True)`, which setfit 1.2.0 loads
  too), ``onnx_fp32/`` and ``onnx_int8/`` (`export_onnx`; on the CPU only). Every variant predicts with this
  one model.
- ``predict``: one variant predicts the test split (``repeat_texts`` copies of it, one call): ``setfit``
  (setfit 1.2.0's `SetFitModel.predict`), ``torch`` (setfit_core), ``onnx_fp32``, ``onnx_int8`` (setfit_core
  with ``backend="onnx"``); on a GPU ``setfit_b256`` (setfit at batch 256), ``torch_fp16`` and ``torch_bf16``
  (setfit_core with ``inference_dtype``). On a CPU every variant predicts in batches of 64; on a GPU setfit in
  its default 32 (and 256), setfit_core in its own default (256 there).
- ``stream``: `predict_to_parquet` on a synthetic Parquet of N rows (row groups of 4,096), peak RSS read
  after it: flat in N when input is streamed and output written as it goes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _workers import (
    PREDICT_BATCH_SIZE,
    WARMUP_TEXTS,
    _core_args,
    _finish,
    _setup,
    few_shot_sample,
    load_split,
    peak_rss_mib,
    to_ids,
)
from sklearn.metrics import accuracy_score, f1_score

# variant -> (library, setfit_core's inference_dtype or ONNX directory, batch size on a GPU; None: the library's
# default). On a CPU every variant predicts in batches of PREDICT_BATCH_SIZE, as in earlier rows.
VARIANTS: dict[str, tuple[str, str | None, int | None]] = {
    "setfit": ("setfit", None, 32), "setfit_b256": ("setfit", None, 256), "torch": ("setfit_core", None, None),
    "torch_fp16": ("setfit_core", "float16", None), "torch_bf16": ("setfit_core", "bfloat16", None),
    "onnx_fp32": ("onnx", "onnx_fp32", None), "onnx_int8": ("onnx", "onnx_int8", None),
}
# Texts predicted, untimed, before the timed call on a GPU: several full batches, so that kernels and the
# tokenizer are warm at the timed call's shapes.
GPU_WARMUP_TEXTS = 1024


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    from setfit_core import SetFitModel, Trainer

    _setup(spec)
    train = few_shot_sample(load_split(spec["data_root"], spec["dataset"], "train"), spec["shots"], spec["seed"])
    model = SetFitModel.from_pretrained(spec["model"], device=spec["device"])
    m: dict[str, Any] = {}
    started = time.perf_counter()
    Trainer(model, _core_args({**spec, "library": "setfit_core", "amp": False}, spec["work"]),
            train_dataset={"text": train.text.tolist(), "label": train.label.tolist()}).train()
    m["train_s"] = time.perf_counter() - started
    root = Path(spec["work"])
    model.save_pretrained(str(root / "torch"), setfit_compatible=True)
    for name, quantize in (("onnx_fp32", None), ("onnx_int8", "int8")) if spec["device"] == "cpu" else ():
        started = time.perf_counter()
        model.export_onnx(root / name, quantize=quantize)
        m[f"export_{name}_s"] = time.perf_counter() - started
    return _finish(spec, m)


def _load(variant: str, root: Path, device: str):
    library, setting, _ = VARIANTS[variant]
    if library == "setfit":
        from setfit import SetFitModel

        return SetFitModel.from_pretrained(str(root / "torch"), device=device)
    from setfit_core import SetFitModel

    if library == "setfit_core":
        return SetFitModel.from_pretrained(str(root / "torch"), device=device, inference_dtype=setting)
    if device != "cpu":
        raise ValueError(f"variant {variant!r} runs on the CPU only (onnxruntime's CPU build); got device {device!r}")
    return SetFitModel.from_pretrained(str(root / setting), backend="onnx")


def predict_batch_size(variant: str, device: str) -> int | None:
    """The batch size `variant` predicts in on `device`; None: setfit_core's default for the device."""
    return PREDICT_BATCH_SIZE if device == "cpu" else VARIANTS[variant][2]


def predict(spec: dict[str, Any]) -> dict[str, Any]:
    clock = _setup(spec)
    test = load_split(spec["data_root"], spec["dataset"], "test")
    copies = spec.get("repeat_texts", 1)
    texts, labels = test.text.tolist() * copies, np.tile(test.label.to_numpy(), copies)
    batch_size = predict_batch_size(spec["variant"], spec["device"])
    m: dict[str, Any] = {"num_test": len(texts), "repeat_texts": copies, "batch_size": batch_size}
    started = time.perf_counter()
    model = _load(spec["variant"], Path(spec["work"]), spec["device"])
    m["load_s"] = time.perf_counter() - started
    kwargs = {"as_numpy": True, "use_labels": False, "show_progress_bar": False}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    warmup = WARMUP_TEXTS if spec["device"] == "cpu" else GPU_WARMUP_TEXTS
    model.predict(texts[:warmup], **kwargs)  # untimed: lazy init, kernels
    with clock.time("predict_s", m):  # synchronised on a GPU
        pred = to_ids(model.predict(texts, **kwargs))
    m["predict_texts_per_s"] = len(texts) / m["predict_s"]
    m["accuracy"] = float(accuracy_score(labels, pred))
    m["macro_f1"] = float(f1_score(labels, pred, average="macro"))
    np.save(Path(spec["result_path"]).with_suffix(".npy"), pred)  # agreement is computed by the orchestrator
    return _finish(spec, m)


def stream(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of `predict_to_parquet` over `rows` synthetic texts (sst2 test texts, cycled)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from setfit_core.pipeline import predict_to_parquet

    _setup(spec)
    texts = load_split(spec["data_root"], spec["dataset"], "test").text.tolist()
    source = Path(spec["work"]) / f"stream-{spec['rows']}.parquet"
    with pq.ParquetWriter(source, pa.schema([("text", pa.string())])) as writer:
        for start in range(0, spec["rows"], 65_536):  # written in parts: the input file is not held in memory
            n = min(65_536, spec["rows"] - start)
            writer.write_table(pa.table({"text": [texts[(start + i) % len(texts)] for i in range(n)]}))
    m: dict[str, Any] = {"peak_rss_before_mib": peak_rss_mib()}
    result = predict_to_parquet(str(Path(spec["work"]) / spec["variant"]), str(source),
                                str(Path(spec["work"]) / f"stream-{spec['rows']}-out.parquet"),
                                engine="onnx" if spec["variant"].startswith("onnx") else "torch",
                                device=None if spec["variant"].startswith("onnx") else spec["device"])
    m["peak_rss_after_predict_mib"] = peak_rss_mib()  # before the check below reads the output back
    m.update(rows=result["rows"], predict_s=result["seconds"], predict_texts_per_s=result["rows"] / result["seconds"])
    m["output_rows"] = pd.read_parquet(result["output_data"], columns=["predicted_id"]).shape[0]
    return _finish(spec, m)

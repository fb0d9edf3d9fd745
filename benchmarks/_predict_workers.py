"""Prediction benchmark runs (compare_setfit.py --predict), each in a fresh subprocess.

- ``predict-prepare``: trains one model with setfit_core (setfit's default recipe, the run's few-shot sample)
  and writes it three ways: ``torch/`` (`save_pretrained(setfit_compatible=True)`, which setfit 1.2.0 loads
  too), ``onnx_fp32/`` and ``onnx_int8/`` (`export_onnx`). Every variant predicts with this one model.
- ``predict``: one variant predicts the test split: ``setfit`` (setfit 1.2.0's `SetFitModel.predict`),
  ``torch`` (setfit_core), ``onnx_fp32``, ``onnx_int8`` (setfit_core with ``backend="onnx"``).
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

VARIANTS = ("setfit", "torch", "onnx_fp32", "onnx_int8")


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
    for name, quantize in (("onnx_fp32", None), ("onnx_int8", "int8")):
        started = time.perf_counter()
        model.export_onnx(root / name, quantize=quantize)
        m[f"export_{name}_s"] = time.perf_counter() - started
    return _finish(spec, m)


def _load(variant: str, root: Path):
    if variant == "setfit":
        from setfit import SetFitModel

        return SetFitModel.from_pretrained(str(root / "torch"), device="cpu")
    from setfit_core import SetFitModel

    if variant == "torch":
        return SetFitModel.from_pretrained(str(root / "torch"), device="cpu")
    return SetFitModel.from_pretrained(str(root / variant), backend="onnx")


def predict(spec: dict[str, Any]) -> dict[str, Any]:
    _setup(spec)
    test = load_split(spec["data_root"], spec["dataset"], "test")
    texts = test.text.tolist()
    m: dict[str, Any] = {"num_test": len(texts)}
    started = time.perf_counter()
    model = _load(spec["variant"], Path(spec["work"]))
    m["load_s"] = time.perf_counter() - started
    kwargs = {"batch_size": PREDICT_BATCH_SIZE, "as_numpy": True, "use_labels": False, "show_progress_bar": False}
    model.predict(texts[:WARMUP_TEXTS], **kwargs)  # untimed: lazy init
    started = time.perf_counter()
    pred = to_ids(model.predict(texts, **kwargs))
    m["predict_s"] = time.perf_counter() - started
    m["predict_texts_per_s"] = len(texts) / m["predict_s"]
    m["accuracy"] = float(accuracy_score(test.label, pred))
    m["macro_f1"] = float(f1_score(test.label, pred, average="macro"))
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
                                engine="onnx" if spec["variant"].startswith("onnx") else "torch")
    m["peak_rss_after_predict_mib"] = peak_rss_mib()  # before the check below reads the output back
    m.update(rows=result["rows"], predict_s=result["seconds"], predict_texts_per_s=result["rows"] / result["seconds"])
    m["output_rows"] = pd.read_parquet(result["output_data"], columns=["predicted_id"]).shape[0]
    return _finish(spec, m)

"""Quick GPU probe: body-phase time and accuracy of several configurations in one process.

A development tool beside compare_setfit.py (which isolates every run in its own process, for the
published numbers). Each argument is LIB:DATA:SHOTS:SEED[:setting=json...], settings separated by ":"
(or by "|" when a value holds a colon). LIB is `ours` (setfit_core), `fast` (preset="fast"), `theirs`
(setfit 1.2.0, default recipe) or `frozen` (no fine-tuning: the body as loaded + LogisticRegression).
A setting `engine.FIELD=json` sets an `EngineOptions` field (e.g. `engine.cuda_graphs=false`); any other
is a `TrainingArguments` field. Environment: SETFIT_BENCH_MODEL (model dir), SETFIT_BENCH_DATA (folder
with <name>/{train,test}.parquet). Prints one JSON line per run:

    python benchmarks/gpu_probe.py ours:sst2:64:0 ours:sst2:64:0:engine.cuda_graphs=false theirs:sst2:64:0
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score

MODEL, DATA = os.environ["SETFIT_BENCH_MODEL"], os.environ["SETFIT_BENCH_DATA"]


def sample(name: str, shots: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_parquet(f"{DATA}/{name}/train.parquet")
    test = pd.read_parquet(f"{DATA}/{name}/test.parquet")
    few = pd.concat([train[train.label == label].sample(n=shots, random_state=seed)
                     for label in sorted(train.label.unique())])
    return few, test


def timed(run) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def ours(few, test, seed: int, engine: dict, frozen: bool = False, **fields) -> dict:
    from setfit_core import EngineOptions, SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(MODEL, device="cuda")
    fields.setdefault("num_iterations", None if fields.get("preset") else 20)
    args = TrainingArguments(seed=seed, show_progress_bar=False, save_strategy="no", **fields)
    trainer = Trainer(model, args, train_dataset=few[["text", "label"]], engine=EngineOptions(**engine))
    body = 0.0 if frozen else timed(trainer.train_embeddings)
    trainer.train_classifier()
    started = time.perf_counter()
    pred = model.predict(test.text.tolist(), batch_size=64, as_numpy=True)
    report = trainer.body_result.engine if trainer.body_result else None
    return {"body_s": body, "pred": pred, "predict_s": time.perf_counter() - started,
            "steps": trainer.body_result.steps if trainer.body_result else 0,
            "graphed_steps": report.graphed_steps if report else 0}


def theirs(few, test, seed: int) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(MODEL, device="cuda")
    args = TrainingArguments(num_iterations=20, seed=seed, show_progress_bar=False, output_dir=tempfile.mkdtemp(),
                             report_to="none", save_strategy="no")
    data = Dataset.from_pandas(few[["text", "label"]], preserve_index=False)
    trainer = Trainer(model=model, args=args, train_dataset=data, metric=lambda a, b: {"unused": 0})
    x, y = few.text.tolist(), few.label.tolist()
    body = timed(lambda: trainer.train_embeddings(x, y, args=args))
    trainer.train_classifier(x, y, args=args)
    started = time.perf_counter()
    pred = np.asarray(model.predict(test.text.tolist(), batch_size=64, as_numpy=True))
    return {"body_s": body, "pred": pred, "predict_s": time.perf_counter() - started, "steps": None,
            "graphed_steps": None}


def parse(spec: str) -> tuple[str, str, int, int, dict, dict]:
    lib, name, shots, seed, *rest = spec.split(":", 4)
    items = rest[0].split("|" if "|" in rest[0] or "{" in rest[0] else ":") if rest else []
    engine, fields = {}, {}
    for item in items:
        key, value = item.split("=", 1)
        if key.startswith("engine."):
            engine[key.removeprefix("engine.")] = json.loads(value)
        else:
            fields[key] = json.loads(value)
    if lib == "fast":
        fields["preset"] = "fast"
    return lib, name, int(shots), int(seed), engine, fields


def main() -> None:
    for spec in sys.argv[1:]:
        lib, name, shots, seed, engine, fields = parse(spec)
        few, test = sample(name, shots, seed)
        torch.cuda.reset_peak_memory_stats()
        if lib == "theirs":
            out = theirs(few, test, seed)
        else:
            out = ours(few, test, seed, engine, frozen=lib == "frozen", **fields)
        print(json.dumps({
            "lib": lib, "engine": engine, "fields": fields, "data": name, "shots": shots, "seed": seed,
            "body_s": round(out["body_s"], 2), "steps": out["steps"], "graphed_steps": out["graphed_steps"],
            "acc": round(accuracy_score(test.label, out["pred"]), 4),
            "f1": round(f1_score(test.label, out["pred"], average="macro"), 4),
            "predict_tps": round(len(test) / out["predict_s"]),
            "peak_gpu_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20),
        }), flush=True)


if __name__ == "__main__":
    main()

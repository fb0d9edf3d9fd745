"""One benchmark run, executed inside a fresh subprocess (see compare_setfit.py --worker).

A fresh process per run makes `ru_maxrss` (peak RSS) and the CUDA peak that run's alone, and keeps one
library's import side effects (setfit switches transformers logging to INFO at import) away from the
other. Only numpy/pandas/torch/sklearn are imported at module level; setfit / datasets are imported
inside the setfit runner, so the setfit_core path works on machines without them.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score

# The recipe both libraries get (setfit's documented default): body batch 16, 1 body epoch, 20 iterations of pairs,
# CosineSimilarityLoss and a LogisticRegression head (both libraries' defaults, so not spelled out).
# The classifier halves of the tuples are the shared defaults; the LogisticRegression head ignores them.
RECIPE: dict[str, Any] = {"batch_size": (16, 2), "num_epochs": (1, 16), "num_iterations": 20}
# Prediction batch size, the same for both libraries, and the size of the untimed warm-up call.
PREDICT_BATCH_SIZE = 64
WARMUP_TEXTS = 32
# The test subset for --test-rows is drawn with this fixed seed, so every run of a config sees the same rows.
TEST_SUBSET_SEED = 0


def few_shot_sample(train: pd.DataFrame, shots: int, seed: int, labels: list[int] | None = None) -> pd.DataFrame:
    """The few-shot sample: per label in ascending order, `sample(n=shots, random_state=seed)`, concatenated.
    A label with fewer than `shots` training rows gives all of them (hwu64 has one with 35)."""
    labels = sorted(train.label.unique()) if labels is None else labels
    return pd.concat([train[train.label == lab].sample(n=min(shots, int((train.label == lab).sum())),
                                                       random_state=seed) for lab in labels])


def load_split(data_root: str, dataset: str, split: str) -> pd.DataFrame:
    path = Path(data_root) / dataset / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"dataset split {str(path)!r} does not exist; check --data-root and --datasets")
    return pd.read_parquet(path)


def test_subset(test: pd.DataFrame, rows: int | None) -> pd.DataFrame:
    if rows is None or rows >= len(test):
        return test
    return test.sample(n=rows, random_state=TEST_SUBSET_SEED)


@dataclass
class Clock:
    """perf_counter timings; on CUDA, synchronize on both edges so queued kernels count where they ran."""

    cuda: bool

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def time(self, name: str, into: dict[str, Any]) -> Iterator[None]:
        self._sync()
        started = time.perf_counter()
        yield
        self._sync()
        into[name] = time.perf_counter() - started


def peak_rss_mib() -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def host_probe_ms() -> float:
    """Milliseconds for a fixed CPU workload. Taken at the start and end of each run: on a shared machine
    a slow probe flags a run whose timings were hit by other load (observed: the same steps 0.45 s or 5 s)."""
    a = torch.ones(256, 256)
    started = time.perf_counter()
    for _ in range(200):
        a = (a @ a).clamp_(max=1.0)
    return 1000 * (time.perf_counter() - started)


def cpu_model() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        out = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "model name":
            return value.strip()
    return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("setfit", "sentence-transformers", "transformers", "torch", "scikit-learn", "datasets", "numpy"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    import setfit_core

    out["setfit_core"] = setfit_core.__version__
    return out


def environment(device: str) -> dict[str, Any]:
    cuda = device == "cuda"
    return {
        "device_name": torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine()),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "versions": versions(),
    }


def to_ids(pred: Any) -> np.ndarray:
    """Predictions as an int array, whether a library returned a tensor, an array or a list."""
    if isinstance(pred, torch.Tensor):
        pred = pred.cpu().numpy()
    return np.asarray(pred).astype(np.int64)


# ---- the two libraries --------------------------------------------------------------------------
# Each runner loads the model, trains phase 1 and phase 2 as separately timed calls, and returns the
# trained model plus what it measured. Everything after training (prediction, metrics) is shared.


def _core_args(spec: dict[str, Any], output_dir: str, **overrides: Any):
    from setfit_core import TrainingArguments

    recipe = {**RECIPE, **overrides}
    if spec["library"] == "fast":
        recipe = {"preset": "fast", **overrides}  # the preset's own batches and length
    # save_strategy="no": neither library may spend time writing checkpoints.
    return TrainingArguments(output_dir=output_dir, seed=spec["seed"], use_amp=spec["amp"], show_progress_bar=False,
                             save_strategy="no", report_to="none", **recipe)


def run_setfit_core(spec: dict[str, Any], train: pd.DataFrame, clock: Clock, m: dict[str, Any], **overrides: Any):
    with clock.time("import_s", m):
        # setfit_core imports sentence-transformers lazily (inside from_pretrained) while setfit imports it
        # at import time; import it here so that load_s measures the same work for both libraries.
        import sentence_transformers  # noqa: F401

        from setfit_core import SetFitModel, Trainer
    with clock.time("load_s", m):
        model = SetFitModel.from_pretrained(spec["model"], device=spec["device"])
    m["peak_rss_after_load_mib"] = peak_rss_mib()  # the floor that training adds to
    with tempfile.TemporaryDirectory() as tmp:
        args = _core_args(spec, tmp, **overrides)
        data = {"text": train.text.tolist(), "label": train.label.tolist()}
        with clock.time("setup_s", m):
            trainer = Trainer(model, args, train_dataset=data)
        with clock.time("body_s", m):
            trainer.train_embeddings()
        with clock.time("head_s", m):
            trainer.train_classifier()
    m["body_steps"], m["body_pairs"] = trainer.body_result.steps, trainer.body_result.num_pairs
    m["train_args"] = args.to_dict()
    return model


def _local_accuracy(y_pred: Any, y_true: Any, **_: Any) -> dict[str, float]:
    # setfit's default metric="accuracy" loads from the Hub (fails offline); a callable never does.
    return {"accuracy": float(accuracy_score(to_ids(y_true), to_ids(y_pred)))}


def run_probe(spec: dict[str, Any], train: pd.DataFrame, clock: Clock, m: dict[str, Any]):
    """The frozen-probe baseline: setfit_core's model with phase 1 left out, so the LogisticRegression head is
    fitted on the untouched body's embeddings."""
    from setfit_core import SetFitModel, Trainer

    with clock.time("load_s", m):
        model = SetFitModel.from_pretrained(spec["model"], device=spec["device"])
    m["peak_rss_after_load_mib"] = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, _core_args(spec, tmp), train_dataset={"text": train.text.tolist(),
                                                                        "label": train.label.tolist()})
        m["body_s"], m["body_steps"], m["body_pairs"] = 0.0, 0, 0
        with clock.time("head_s", m):
            trainer.train_classifier()
    return model


def run_setfit(spec: dict[str, Any], train: pd.DataFrame, clock: Clock, m: dict[str, Any], **overrides: Any):
    with clock.time("import_s", m):
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
        from transformers.trainer_callback import ProgressCallback
    with clock.time("load_s", m):
        model = SetFitModel.from_pretrained(spec["model"], device=spec["device"])
    m["peak_rss_after_load_mib"] = peak_rss_mib()  # the floor that training adds to
    with tempfile.TemporaryDirectory() as tmp:
        # output_dir: setfit (via the transformers Trainer) writes there; a temp dir keeps the repo clean.
        recipe = {**RECIPE, **overrides}
        args = TrainingArguments(output_dir=tmp, seed=spec["seed"], use_amp=spec["amp"], show_progress_bar=False,
                                 save_strategy="no", report_to="none", **recipe)
        dataset = Dataset.from_dict({"text": train.text.tolist(), "label": train.label.tolist()})
        with clock.time("setup_s", m):
            trainer = Trainer(model=model, args=args, train_dataset=dataset, metric=_local_accuracy)
            # show_progress_bar=False does not reach the inner transformers Trainer, whose tqdm
            # ProgressCallback still draws a bar per step; remove it (PrinterCallback would print logs instead).
            trainer.st_trainer.remove_callback(ProgressCallback)
            trainer.st_trainer.args.disable_tqdm = True
        # Exactly what setfit's Trainer.train() does without an eval_dataset, split into its two calls.
        x_train, y_train = trainer.dataset_to_parameters(trainer.train_dataset)
        with clock.time("body_s", m):
            trainer.train_embeddings(x_train, y_train, args=args)
        with clock.time("head_s", m):
            trainer.train_classifier(x_train, y_train, args=args)
    m["body_steps"], m["body_pairs"] = trainer.st_trainer.state.global_step, len(trainer.st_trainer.train_dataset)
    m["train_args"] = {"output_dir": "<tmp>", "seed": spec["seed"], "use_amp": spec["amp"], **recipe}
    return model


def predict_and_score(model: Any, test: pd.DataFrame, clock: Clock, m: dict[str, Any]) -> None:
    texts = test.text.tolist()
    # Same public call for both libraries; the untimed warm-up absorbs lazy init (kernels, tokenizer caches).
    model.predict(texts[:WARMUP_TEXTS], batch_size=PREDICT_BATCH_SIZE, as_numpy=True, use_labels=False,
                  show_progress_bar=False)
    with clock.time("predict_s", m):
        pred = model.predict(texts, batch_size=PREDICT_BATCH_SIZE, as_numpy=True, use_labels=False,
                             show_progress_bar=False)
    y_pred, y_true = to_ids(pred), test.label.to_numpy()
    m["predict_texts_per_s"] = len(texts) / m["predict_s"]
    m["accuracy"] = float(accuracy_score(y_true, y_pred))
    m["macro_f1"] = float(f1_score(y_true, y_pred, average="macro"))


# ---- worker entry points ------------------------------------------------------------------------


def _setup(spec: dict[str, Any]) -> Clock:
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["device"] == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was given but torch.cuda.is_available() is False on this machine")
        torch.cuda.reset_peak_memory_stats()
    if spec["model"] is None:
        from setfit_core import default_model_path

        spec["model"] = default_model_path()
    spec["host_probe_start_ms"] = host_probe_ms()
    return Clock(cuda=spec["device"] == "cuda")


def _finish(spec: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    m["peak_rss_mib"] = peak_rss_mib()  # before the probe below, though it allocates next to nothing
    m["host_probe_end_ms"] = host_probe_ms()
    if spec["device"] == "cuda":
        m["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        m["peak_gpu_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    if "body_s" in m and m.get("body_steps"):
        m["steps_per_s"] = m["body_steps"] / m["body_s"]
    return {**{k: v for k, v in spec.items() if k != "result_path"}, **m, **environment(spec["device"]),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_benchmark(spec: dict[str, Any]) -> dict[str, Any]:
    """One (library, dataset, shots, seed) run: train, predict, score."""
    clock = _setup(spec)
    train = load_split(spec["data_root"], spec["dataset"], "train")
    labels = sorted(train.label.unique())[: spec.get("classes") or None]  # --classes N: the first N labels
    train = few_shot_sample(train, spec["shots"], spec["seed"], labels=labels)
    test = load_split(spec["data_root"], spec["dataset"], "test")
    test = test_subset(test[test.label.isin(labels)], spec["test_rows"])
    m: dict[str, Any] = {"num_train": len(train), "num_classes": int(train.label.nunique()), "num_test": len(test)}
    runners = {"setfit_core": run_setfit_core, "fast": run_setfit_core, "setfit": run_setfit, "probe": run_probe}
    model = runners[spec["library"]](spec, train, clock, m)
    predict_and_score(model, test, clock, m)
    return _finish(spec, m)


def run_pairs_case(spec: dict[str, Any]) -> dict[str, Any]:
    """One library on `classes` x `shots` with oversampling (the pair-explosion case), body + head."""
    clock = _setup(spec)
    train = load_split(spec["data_root"], spec["dataset"], "train")
    train = few_shot_sample(train, spec["shots"], spec["seed"], labels=list(range(spec["classes"])))
    m: dict[str, Any] = {"num_train": len(train), "num_classes": spec["classes"]}
    overrides = {"sampling_strategy": "oversampling", "num_iterations": None, "max_steps": spec["max_steps"]}
    if spec["library"] == "setfit_core":
        run_setfit_core(spec, train, clock, m, **overrides,
                        gradient_checkpointing=spec.get("gradient_checkpointing", False))
    else:
        run_setfit(spec, train, clock, m, **overrides)
    return _finish(spec, m)


def worker_main(spec_json: str) -> None:
    """Run one spec; the environment (offline, no progress bars) was set by compare_setfit.spawn."""
    spec = json.loads(spec_json)
    if spec["kind"].startswith("predict") or spec["kind"] == "stream":
        import _predict_workers

        run = {"predict-prepare": _predict_workers.prepare, "predict": _predict_workers.predict,
               "stream": _predict_workers.stream}[spec["kind"]]
        result = run(spec)
    else:
        result = run_pairs_case(spec) if spec["kind"] == "pairs" else run_benchmark(spec)
    Path(spec["result_path"]).write_text(json.dumps(result, default=str))

"""int8 ONNX against fp32 ONNX and torch: agreement, accuracy and texts/s on one trained model, both heads.

    python benchmarks/int8_probe.py --dataset sst2 --shots 8 --seed 0 --threads 2 --passes 60

Trains a model from the offline MiniLM (setfit's default recipe, or `--preset fast`), fits a differentiable
head on the same body, exports each head's model as fp32 and int8 ONNX, and predicts the whole test split with
all three. Speed: `--passes` passes of `--chunk` random test texts, fp32 and int8 back to back in alternating
order; the median of the per-pass ratios is steadier on a shared machine than any one pass. One JSON line per
head on stdout (`--out F.jsonl` appends them). docs/performance.md, "int8: what was tried", used this setup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The working tree's setfit_core is the one under test, installed or not (as in compare_setfit.py).
sys.path.insert(1, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from setfit_core import SetFitModel, Trainer, TrainingArguments  # noqa: E402

# compare_setfit.py's recipe: setfit's defaults.
RECIPE = {"batch_size": (16, 2), "num_epochs": (1, 16), "num_iterations": 20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="sst2")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", choices=("fast",), default=None, help="the fast preset instead of setfit's recipe")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=60)
    p.add_argument("--chunk", type=int, default=192)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    root = Path(args.data_root) / args.dataset
    train = pd.read_parquet(root / "train.parquet")
    train = pd.concat([train[train.label == lab].sample(n=args.shots, random_state=args.seed)
                       for lab in sorted(train.label.unique())])
    test = pd.read_parquet(root / "test.parquet")
    for head, model in trained(train, args).items():
        with tempfile.TemporaryDirectory() as tmp:
            row = {"dataset": args.dataset, "shots": args.shots, "seed": args.seed, "preset": args.preset,
                   "head": head, "threads": args.threads, **measure(model, test, Path(tmp), args)}
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")


def trained(train: pd.DataFrame, args) -> dict[str, SetFitModel]:
    recipe = {"preset": "fast"} if args.preset else RECIPE
    model = SetFitModel.from_pretrained(device="cpu")
    Trainer(model, TrainingArguments(seed=args.seed, show_progress_bar=False, save_strategy="no", **recipe),
            train_dataset=train[["text", "label"]]).train()
    differentiable = SetFitModel(model.model_body, use_differentiable_head=True)
    differentiable.fit(train.text.tolist(), train.label.tolist(), num_epochs=16, show_progress_bar=False)
    return {"sklearn": model, "differentiable": differentiable}


def measure(model: SetFitModel, test: pd.DataFrame, tmp: Path, args) -> dict:
    texts, labels = test.text.tolist(), test.label.to_numpy()
    theirs = np.asarray(model.predict(texts, as_numpy=True))
    out = {"torch_accuracy": round(float((theirs == labels).mean()), 4)}
    loaded = {}
    for name, quantize in (("fp32", None), ("int8", "int8")):
        started = time.perf_counter()
        loaded[name] = SetFitModel.from_pretrained(model.export_onnx(tmp / name, quantize=quantize), backend="onnx")
        out[f"{name}_export_s"] = round(time.perf_counter() - started, 1)
        ours = np.asarray(loaded[name].predict(texts, as_numpy=True))
        out[f"{name}_agreement"] = round(float((ours == theirs).mean()), 4)
        out[f"{name}_accuracy_change"] = round(float((ours == labels).mean() - (theirs == labels).mean()), 4)
    out.update(speed(loaded, texts, args))
    return out


def speed(loaded: dict[str, SetFitModel], texts: list[str], args) -> dict:
    rng = np.random.default_rng(0)
    names = list(loaded)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # untimed: lazy initialisation
        loaded[n].predict(texts[:64], batch_size=64)
    for i in range(args.passes):
        chunk = [texts[j] for j in rng.choice(len(texts), min(args.chunk, len(texts)), replace=False)]
        for n in names if i % 2 == 0 else names[::-1]:
            started = time.perf_counter()
            loaded[n].predict(chunk, batch_size=64)
            seconds[n].append(time.perf_counter() - started)
    ratios = [f / q for f, q in zip(seconds["fp32"], seconds["int8"], strict=True)]
    return {"int8_over_fp32_median": round(statistics.median(ratios), 2),
            **{f"{n}_texts_per_s_median": round(args.chunk / statistics.median(seconds[n])) for n in names}}


if __name__ == "__main__":
    main()

"""Grid search for the `fast` preset: phase-1 recipes against the frozen probe (and setfit), one process.

    python benchmarks/fast_grid.py --datasets hwu64,emotion --shots 8 --seeds 0,1,2 --configs grid.json \\
        --data-root DIR --model DIR --device cuda --out rows.jsonl [--setfit]

A development tool for choosing the preset's settings (`compare_setfit.py` measures the chosen recipe
against setfit in fresh processes). For every (dataset, shots, seed) it draws the usual few-shot sample
(per label in ascending order, `sample(n=shots, random_state=seed)`), then for every config in `--configs`
(a JSON list of `{"name": ..., "args": {TrainingArguments fields}}`) trains phase 1 from the same starting
weights, encodes the train and test texts once, and fits several LogisticRegression heads on those
embeddings (`--head-c`: regularisation strengths), so one trained body scores every head. The frozen probe
(no phase 1) is scored the same way, and with `--setfit` setfit 1.2.0's default recipe too. One JSON row
per (config, head) with the accuracy, macro-F1 and phase-1 seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score


def sample(data_root: Path, name: str, shots: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_parquet(data_root / name / "train.parquet")
    test = pd.read_parquet(data_root / name / "test.parquet")
    few = pd.concat([train[train.label == label].sample(n=min(shots, int((train.label == label).sum())),
                                                        random_state=seed)
                     for label in sorted(train.label.unique())])
    return few, test


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Unnormalized:
    """Inside, the body's Normalize module (if any) passes its input through: the mean-pooled embedding."""

    def __init__(self, body) -> None:
        self.body = body
        self.key = next((k for k, m in body._modules.items() if type(m).__name__ == "Normalize"), None)

    def __enter__(self):
        if self.key is not None:
            self.saved = self.body._modules[self.key]
            self.body._modules[self.key] = torch.nn.Identity()

    def __exit__(self, *exc):
        if self.key is not None:
            self.body._modules[self.key] = self.saved


def score_heads(body, few: pd.DataFrame, test: pd.DataFrame, cs: list[float]) -> dict[tuple[str, float], tuple]:
    """Accuracy and macro-F1 of LogisticRegression heads (one per C) on this body's embeddings, as the body
    gives them ("norm": with its Normalize module) and mean-pooled only ("raw")."""
    from setfit_core.engine.inference import embed

    scores = {}
    for kind in ("norm", "raw"):
        with _Unnormalized(body) if kind == "raw" else contextlib.nullcontext():
            x_train = embed(body, few.text.tolist(), 64, normalize=False).cpu().numpy()
            x_test = embed(body, test.text.tolist(), 256, normalize=False).cpu().numpy()
        for c in cs:
            head = LogisticRegression(C=c, max_iter=2000).fit(x_train, few.label.to_numpy())
            pred = head.predict(x_test)
            scores[kind, c] = (accuracy_score(test.label, pred), f1_score(test.label, pred, average="macro"))
    return scores


def run_setfit(model_dir: str, few: pd.DataFrame, test: pd.DataFrame, seed: int, device: str) -> dict:
    import tempfile

    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(model_dir, device=device)
    args = TrainingArguments(num_iterations=20, seed=seed, show_progress_bar=False, output_dir=tempfile.mkdtemp(),
                             report_to="none", save_strategy="no")
    data = Dataset.from_pandas(few[["text", "label"]], preserve_index=False)
    trainer = Trainer(model=model, args=args, train_dataset=data, metric=lambda a, b: {"unused": 0})
    x, y = few.text.tolist(), few.label.tolist()
    sync()
    started = time.perf_counter()
    trainer.train_embeddings(x, y, args=args)
    sync()
    seconds = time.perf_counter() - started
    trainer.train_classifier(x, y, args=args)
    pred = np.asarray(model.predict(test.text.tolist(), batch_size=256, as_numpy=True))
    return {"body_s": round(seconds, 2), "acc": round(accuracy_score(test.label, pred), 4),
            "f1": round(f1_score(test.label, pred, average="macro"), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="hwu64")
    p.add_argument("--shots", default="8")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--configs", type=Path, required=True, help="JSON list of {name, args}")
    p.add_argument("--only", default=None, help="comma-separated config names to run (default: all)")
    p.add_argument("--head-c", default="1,10,100", help="LogisticRegression C values to score")
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--setfit", action="store_true", help="also setfit 1.2.0's default recipe")
    p.add_argument("--out", type=Path, required=True)
    cli = p.parse_args()

    from setfit_core import SetFitModel, Trainer, TrainingArguments

    configs = json.loads(cli.configs.read_text())
    if cli.only is not None:
        wanted = cli.only.split(",") if cli.only else []
        unknown = sorted(set(wanted) - {config["name"] for config in configs})
        if unknown:
            raise SystemExit(f"--only names configs not in {cli.configs}: {unknown}")
        configs = [config for config in configs if config["name"] in wanted]
    cs = [float(c) for c in cli.head_c.split(",")]
    base = SetFitModel.from_pretrained(cli.model, device=cli.device)
    initial = {k: v.detach().clone() for k, v in base.model_body.state_dict().items()}
    out = cli.out.open("a")

    def emit(row: dict) -> None:
        out.write(json.dumps(row) + "\n")
        out.flush()
        print(json.dumps(row), flush=True)

    for name in cli.datasets.split(","):
        for shots in [int(s) for s in cli.shots.split(",")]:
            for seed in [int(s) for s in cli.seeds.split(",")]:
                few, test = sample(cli.data_root, name, shots, seed)
                where = {"data": name, "shots": shots, "seed": seed, "classes": int(few.label.nunique()),
                         "device": cli.device}
                base.model_body.load_state_dict(initial)
                for (kind, c), (acc, f1) in score_heads(base.model_body, few, test, cs).items():
                    emit({**where, "config": "frozen", "embed": kind, "head_c": c, "acc": round(acc, 4),
                          "f1": round(f1, 4), "body_s": 0.0, "steps": 0})
                for config in configs:
                    base.model_body.load_state_dict(initial)
                    args = TrainingArguments(seed=seed, show_progress_bar=False, save_strategy="no",
                                             **config["args"])
                    trainer = Trainer(base, args, train_dataset=few[["text", "label"]])
                    sync()
                    started = time.perf_counter()
                    trainer.train_embeddings()
                    sync()
                    seconds = time.perf_counter() - started
                    for (kind, c), (acc, f1) in score_heads(base.model_body, few, test, cs).items():
                        emit({**where, "config": config["name"], "embed": kind, "head_c": c, "acc": round(acc, 4),
                              "f1": round(f1, 4), "body_s": round(seconds, 2), "steps": trainer.body_result.steps})
                if cli.setfit:
                    emit({**where, "config": "setfit", "head_c": None, **run_setfit(cli.model, few, test, seed,
                                                                                     cli.device)})


if __name__ == "__main__":
    main()

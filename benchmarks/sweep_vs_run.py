"""Wall time of an 8-trial head sweep vs one full training run: sst2 8-shot, seed 0, offline MiniLM.

    .venv/bin/python benchmarks/sweep_vs_run.py /work/shared/data/sst2 [--eval-rows 400] [--repeats 1]

Each measurement starts in a fresh artifacts root, so nothing is reused: `train_pipeline` (every stage, no
gate), then `sweep_pipeline` with 8 `C` values (pairs, body and embeddings once, 8 head + evaluation trials on
`trials_at_once` threads, the best exported). A warm-up flow starts Prefect's temporary API first, so its
start-up is in neither number. The goal: the sweep costs at most 2x the run, with one body key.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for name, value in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DO_NOT_TRACK": "1",
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}.items():
    os.environ.setdefault(name, value)

ARGS = {"num_iterations": 20, "batch_size": [16, 2], "num_epochs": [1, 16], "seed": 0, "show_progress_bar": False}
GRID = [{"C": c} for c in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)]


def write_data(data_dir: Path, out: Path, shots: int, eval_rows: int, seed: int) -> tuple[str, str]:
    train = pd.read_parquet(data_dir / "train.parquet")
    sample = pd.concat([train[train.label == lab].sample(n=shots, random_state=seed)
                        for lab in sorted(train.label.unique())], ignore_index=True)
    sample[["text", "label"]].to_parquet(out / "train.parquet", index=False)
    test = pd.read_parquet(data_dir / "test.parquet")
    test = test.sample(n=min(eval_rows, len(test)), random_state=seed) if eval_rows else test
    test[["text", "label"]].to_parquet(out / "test.parquet", index=False)
    return str(out / "train.parquet"), str(out / "test.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--eval-rows", type=int, default=400, help="test rows to evaluate on (0: all)")
    parser.add_argument("--trials-at-once", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    cli = parser.parse_args()
    from prefect import flow
    from setfit_pipeline.flows.sweep import sweep_pipeline
    from setfit_pipeline.flows.train import train_pipeline

    from setfit_core.artifacts import ArtifactStore

    flow(name="warm-up")(lambda: None)()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        train, test = write_data(cli.data_dir, Path(tmp), cli.shots, cli.eval_rows, 0)
        for repeat in range(cli.repeats):
            run_root, sweep_root = f"{tmp}/run-{repeat}", f"{tmp}/sweep-{repeat}"
            started = time.perf_counter()
            run = train_pipeline(train_data=train, eval_data=test, artifacts_root=run_root, args=ARGS,
                                 promote_to=None)
            run_s = time.perf_counter() - started
            started = time.perf_counter()
            sweep = sweep_pipeline(train_data=train, eval_data=test, artifacts_root=sweep_root, args=ARGS,
                                   head_grid=GRID, trials_at_once=cli.trials_at_once, promote_to=None)
            sweep_s = time.perf_counter() - started
            bodies = len(ArtifactStore(sweep_root).list_stages("body"))
            stages = ", ".join(f"{s} {r['seconds']:.1f}" for s, r in run["stages"].items())
            print(f"repeat {repeat}: full run {run_s:.1f} s ({stages}); 8-trial sweep {sweep_s:.1f} s, "
                  f"{bodies} body key(s); ratio {sweep_s / run_s:.2f}x; best {sweep['best']['head_params']} "
                  f"accuracy {sweep['best']['metrics']['eval']['accuracy']:.4f} (run: "
                  f"{run['metrics']['eval']['accuracy']:.4f})", flush=True)


if __name__ == "__main__":
    main()

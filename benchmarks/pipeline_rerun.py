"""Wall time of a full pipeline run vs a head-only rerun: sst2 8-shot, seed 0, offline MiniLM.

    .venv/bin/python benchmarks/pipeline_rerun.py /work/shared/data/sst2 [--prefect]

Training data: the few-shot sample (per label, ascending: ``sample(n=8, random_state=0)``); eval data:
the whole test split. setfit's default recipe (batch 16, 1 epoch, num_iterations 20, LogisticRegression
head). The rerun changes only ``head_params`` (``{"C": 0.5}``).

Timed twice over, each in a fresh artifacts root:
- library: `PipelineRun.run_all()` directly (no Prefect anywhere);
- with ``--prefect``: `train_pipeline` after a warm-up flow has started Prefect's temporary API, so
  the fixed start-up is excluded; reported as flow wall time, as wall time minus the fixed cost of any
  flow run (the median wall time of an empty flow: run creation, state changes, the ~1 s heartbeat
  floor), and as the sum of stage seconds.
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
HEAD_ONLY = {"C": 0.5}
Runs = list[tuple[float, dict[str, tuple[str, float]]]]  # (wall seconds, {stage: (status, seconds)}) per run


def write_data(data_dir: Path, out: Path, shots: int, seed: int) -> tuple[str, str]:
    train = pd.read_parquet(data_dir / "train.parquet")
    sample = pd.concat(
        [train[train.label == lab].sample(n=shots, random_state=seed) for lab in sorted(train.label.unique())],
        ignore_index=True,
    )
    sample[["text", "label"]].to_parquet(out / "train.parquet", index=False)
    return str(out / "train.parquet"), str(data_dir / "test.parquet")


def library_runs(train: str, test: str, root: str) -> Runs:
    from setfit_core.pipeline import PipelineJob, PipelineRun

    runs = []
    for head_params in ({}, HEAD_ONLY):
        job = PipelineJob(train_data=train, eval_data=test, artifacts_root=root, args=ARGS, head_params=head_params)
        started = time.perf_counter()
        results = PipelineRun(job).run_all()
        wall = time.perf_counter() - started
        runs.append((wall, {s: (r.status, r.seconds) for s, r in results.items()}))
        accuracy = results["evaluation"].manifest.metrics["eval"]["accuracy"]
        print(f"library run head_params={head_params}: {wall:.2f} s, eval accuracy {accuracy:.4f}", flush=True)
    return runs


def prefect_runs(train: str, test: str, root: str) -> tuple[Runs, float]:
    from prefect import flow
    from setfit_pipeline.flows.train import train_pipeline

    @flow
    def empty() -> None:
        """The first call starts Prefect's temporary API; later ones time a flow run's fixed cost."""

    empty()
    fixed = []
    for _ in range(3):
        started = time.perf_counter()
        empty()
        fixed.append(time.perf_counter() - started)
    runs = []
    for head_params in ({}, HEAD_ONLY):
        started = time.perf_counter()
        result = train_pipeline(train_data=train, eval_data=test, artifacts_root=root, args=ARGS,
                                head_params=head_params)
        wall = time.perf_counter() - started
        runs.append((wall, {s: (r["status"], r["seconds"]) for s, r in result["stages"].items()}))
        print(f"prefect run head_params={head_params}: {wall:.2f} s", flush=True)
    return runs, sorted(fixed)[1]


def report(name: str, runs: Runs, fixed: float | None = None) -> None:
    (full_wall, full), (rerun_wall, rerun) = runs
    print(f"\n{name}: per-stage seconds (status)")
    print(f"{'stage':<12}{'full run':>22}{'head-only rerun':>24}")
    for stage in full:
        (status, seconds), (rerun_status, rerun_seconds) = full[stage], rerun[stage]
        print(f"{stage:<12}{seconds:>12.2f} ({status:>8}){rerun_seconds:>14.2f} ({rerun_status:>8})")
    full_stages, rerun_stages = (sum(s for _, s in r.values()) for r in (full, rerun))
    print(f"{'sum':<12}{full_stages:>12.2f}{'':>11}{rerun_stages:>14.2f}")
    print(f"{'wall':<12}{full_wall:>12.2f}{'':>11}{rerun_wall:>14.2f}")
    print(f"head-only / full: {rerun_wall / full_wall:.1%} of wall time, "
          f"{rerun_stages / full_stages:.1%} of stage time")
    if fixed is not None:
        ratio = (rerun_wall - fixed) / (full_wall - fixed)
        print(f"an empty flow run takes {fixed:.2f} s; without it: {rerun_wall - fixed:.2f} s / "
              f"{full_wall - fixed:.2f} s = {ratio:.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", type=Path, help="directory with train.parquet and test.parquet (e.g. sst2)")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefect", action="store_true", help="also time the Prefect flow")
    cli = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="pipeline-rerun-") as tmp:
        train, test = write_data(cli.data_dir, Path(tmp), cli.shots, cli.seed)
        report("library (PipelineRun.run_all)", library_runs(train, test, f"{tmp}/library"))
        if cli.prefect:
            runs, fixed = prefect_runs(train, test, f"{tmp}/prefect")
            report("prefect (train_pipeline, start-up excluded)", runs, fixed)


if __name__ == "__main__":
    main()

"""Two identical `setfit-pipeline train` runs started together on one artifacts root, against one run alone.

    python benchmarks/concurrent_runs.py --dataset sst2 --shots 8 --threads 2

What a nightly run plus a manual one do. Each run is the real CLI in its own process (its own temporary
Prefect API, as a user gets it). After an untimed warm-up run, alone: one run on a fresh root. Together: two
runs on another fresh root, started at the same moment; the wall time is the later one's. With stage leases
one run computes each stage and the other waits and reuses it, so together should take little more than
alone (target: at most 1.3x) with exactly one body computed. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_data(data_root: Path, dataset: str, shots: int, out: Path) -> tuple[Path, Path]:
    """The few-shot train split (per label in ascending order, `sample(n=shots, random_state=0)`) and the
    first 500 test rows, as Parquet under `out`."""
    import pandas as pd

    train = pd.read_parquet(data_root / dataset / "train.parquet")
    few = pd.concat([train[train.label == label].sample(n=shots, random_state=0)
                     for label in sorted(train.label.unique())])
    test = pd.read_parquet(data_root / dataset / "test.parquet").head(500)
    paths = out / "train.parquet", out / "test.parquet"
    few[["text", "label"]].to_parquet(paths[0], index=False)
    test[["text", "label"]].to_parquet(paths[1], index=False)
    return paths


def start(train: Path, test: Path, root: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    args = json.dumps({"num_iterations": 20, "seed": 0, "show_progress_bar": False})
    command = [sys.executable, "-m", "setfit_pipeline.flows.cli", "train", "--train-data", str(train),
               "--eval-data", str(test), "--artifacts-root", str(root), "--args", args, "--json"]
    with log.open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)


def finish(process: subprocess.Popen, log: Path, started: float) -> dict:
    code = process.wait()
    seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"a run failed ({code}); its log:\n{log.with_suffix('.err').read_text()[-3000:]}")
    lines = text.splitlines()  # --json prints the flow's result as an indented object
    first = max(i for i, line in enumerate(lines) if line == "{")
    last = max(i for i, line in enumerate(lines) if line == "}")
    result = json.loads("\n".join(lines[first:last + 1]))
    return {"seconds": round(seconds, 1), "stages": {s: r["status"] for s, r in result["stages"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each run (OMP_NUM_THREADS)")
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    cli = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(cli.threads), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    with tempfile.TemporaryDirectory(prefix="concurrent-runs-") as tmp:
        tmp = Path(tmp)
        train, test = write_data(cli.data_root, cli.dataset, cli.shots, tmp)
        env["PREFECT_HOME"] = str(tmp / "prefect")
        # Untimed: the first run creates Prefect's database under PREFECT_HOME and warms the file cache.
        finish(start(train, test, tmp / "warmup", tmp / "warmup.log", env), tmp / "warmup.log", time.perf_counter())

        started = time.perf_counter()
        alone = finish(start(train, test, tmp / "alone", tmp / "alone.log", env), tmp / "alone.log", started)

        started = time.perf_counter()
        runs = [start(train, test, tmp / "together", tmp / f"together-{i}.log", env) for i in range(2)]
        together = [finish(p, tmp / f"together-{i}.log", started) for i, p in enumerate(runs)]

    wall = max(run["seconds"] for run in together)
    computed = {stage: sum(run["stages"][stage] == "computed" for run in together) for stage in alone["stages"]}
    print(json.dumps({
        "dataset": cli.dataset, "shots": cli.shots, "threads": cli.threads,
        "alone_s": alone["seconds"], "together_s": [run["seconds"] for run in together],
        "ratio": round(wall / alone["seconds"], 2), "target": 1.3,
        "computed_per_stage": computed, "one_body": computed["body"] == 1,
    }, indent=2))


if __name__ == "__main__":
    main()

"""Many flow runs in one process: memory and open file descriptors stay flat.

20 head-only reruns and 3 full runs (new seeds) of `train_pipeline` on the tiny model. A leak
of a few hundred KB or one fd per run (an s3fs client, an open Parquet file, a log handler)
shows up as a steady climb over the runs.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from setfit_pipeline.flows.train import train_pipeline

# Many flow runs in a row: ~30 s.
pytestmark = pytest.mark.slow

ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
HEAD_ONLY_RUNS, FULL_RUNS, TOLERANCE = 20, 3, 0.10


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def usage() -> tuple[int, int]:
    gc.collect()  # count what is still referenced, not garbage waiting for a collection
    return rss_kb(), open_fds()


def test_rss_and_fds_stay_flat_over_many_runs(tiny_model_dir, tiny_splits, tmp_path, record_property):
    base = {"train_data": tiny_splits["train"], "eval_data": tiny_splits["eval"],
            "artifacts_root": str(tmp_path / "artifacts"), "model": tiny_model_dir}

    def run(seed: int, c: float) -> dict:
        return train_pipeline(**base, args={**ARGS, "seed": seed}, head_params={"C": c})

    # Warm-up: the first full run and the first head-only rerun load libraries and fill caches.
    run(seed=0, c=1.0)
    run(seed=0, c=0.5)
    start = usage()
    statuses = []
    for i in range(HEAD_ONLY_RUNS - 1):
        result = run(seed=0, c=0.01 * (i + 1))
        statuses.append(result["stages"]["body"]["status"])
    for seed in range(1, FULL_RUNS):
        statuses.append(run(seed=seed, c=1.0)["stages"]["body"]["status"])
    end = usage()
    assert statuses == ["reused"] * (HEAD_ONLY_RUNS - 1) + ["computed"] * (FULL_RUNS - 1)

    report = f"RSS {start[0]} -> {end[0]} kB, open fds {start[1]} -> {end[1]} over {len(statuses)} runs"
    print(report)  # shown with -s; the numbers also go to the JUnit XML
    record_property("rss_kb", f"{start[0]} -> {end[0]}")
    record_property("open_fds", f"{start[1]} -> {end[1]}")
    assert end[0] <= start[0] * (1 + TOLERANCE), f"RSS grew more than {TOLERANCE:.0%}: {report}"
    assert end[1] <= start[1] * (1 + TOLERANCE), f"open fds grew more than {TOLERANCE:.0%}: {report}"

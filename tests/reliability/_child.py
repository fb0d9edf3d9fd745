"""A pipeline process for the fault tests: ``python -m tests.reliability._child JOB_JSON [options]``.

Runs every stage of ``PipelineRun(PipelineJob(**job))`` in order, as ``run_all()`` does, printing one
JSON line per finished stage (so a killed run still tells which stages it got through), then one
with the evaluation metrics. With ``--hang-at body|embeddings`` it writes ``--marker`` at
the stage's first progress update and then sleeps, so the parent can SIGKILL it at a known point
of that stage (a timing-based kill would land elsewhere on a busy 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from setfit_core.pipeline import PipelineJob, PipelineRun

HANG_MESSAGES = {"body": "body training", "embeddings": "embedding"}


def hang_at(stage: str, marker: Path, step: int = 0):
    """A progress callback that announces the stage (at its `step`-th update or later) through ``marker``,
    then waits to be killed."""

    def progress(done: int, total: int, message: str) -> None:
        if message.startswith(HANG_MESSAGES[stage]) and done >= step:
            marker.write_text(f"{stage} {done}/{total}: {message}")
            time.sleep(600)  # the parent kills us long before this ends

    return progress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", type=Path, help="a JSON file of PipelineJob fields")
    parser.add_argument("--hang-at", choices=sorted(HANG_MESSAGES))
    parser.add_argument("--marker", type=Path)
    parser.add_argument("--hang-at-step", type=int, default=0, help="with --hang-at body: hang from this step on")
    cli = parser.parse_args()
    torch.set_num_threads(1)  # two of us may share 2 cores; see tests/conftest.py single_torch_thread
    run = PipelineRun(PipelineJob(**json.loads(cli.job.read_text())))
    progress = hang_at(cli.hang_at, cli.marker, cli.hang_at_step) if cli.hang_at else None
    metrics = {}
    for stage in run.plan:
        result = run.run_stage(stage, progress)
        print(json.dumps({"stage": stage, "status": result.status, "key": result.key}), flush=True)
        metrics = result.manifest.metrics if stage == "evaluation" else metrics
    print(json.dumps({"metrics": metrics}), flush=True)


if __name__ == "__main__":
    main()

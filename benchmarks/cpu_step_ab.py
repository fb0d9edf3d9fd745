"""A/B of phase-1 speed-ups on CPU: ms per step, training loss and peak RSS, one fresh process per run.

    python benchmarks/cpu_step_ab.py --dataset emotion --shots 8 --steps 120 --repeats 2 \
        --variants default,packed_tokens=false,bf16_matmul=never+fast_dropout=false

A variant is `default` (every speed-up that applies), `plain` (none: `EngineOptions.plain()`), or
`EngineOptions` fields set with `field=value` (true/false, an int, none, or a word such as `never`), joined
with `+`; `checkpointed` adds `TrainingArguments(gradient_checkpointing=True)`. Runs alternate the
variants' order, so drift of the machine falls on all of them. The few-shot sample is taken per label in
ascending order, `sample(n=shots, random_state=0)`; the step count is capped by `--steps`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# The working tree's setfit_core is the one under test, installed or not (as in compare_setfit.py): an
# editable install of another checkout would otherwise win, and an A/B of two clones would time one tree.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))



def engine_options(variant: str):
    """The `EngineOptions` a variant names (see the module docstring); ValueError for a bad part."""
    import dataclasses

    from setfit_core import EngineOptions

    fields = {f.name for f in dataclasses.fields(EngineOptions)}
    options, changes = EngineOptions(), {}
    for part in variant.split("+"):
        if part == "plain":
            options = EngineOptions.plain()
        elif part in ("default", "checkpointed"):
            continue
        elif "=" in part and part.split("=", 1)[0] in fields:
            name, value = part.split("=", 1)
            changes[name] = _value(value)
        else:
            raise ValueError(f"{part!r} is not default, plain, checkpointed or an EngineOptions field=value "
                             f"(fields: {', '.join(sorted(fields))})")
    return options.replace(**changes)


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def run_one(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from _workers import few_shot_sample, load_split

    from setfit_core import SetFitModel, TrainingArguments, default_model_path
    from setfit_core.training.embedding_phase import train_body

    torch.set_num_threads(args.threads)
    sample = few_shot_sample(load_split(args.data_root, args.dataset, "train"), args.shots, seed=0)
    model = SetFitModel.from_pretrained(default_model_path(), device="cpu")
    train_args = TrainingArguments(max_steps=args.steps, seed=0, show_progress_bar=False, save_strategy="no",
                                   gradient_checkpointing="checkpointed" in args.variant.split("+"))
    result = train_body(model.model_body, sample.text.tolist(), np.asarray(sample.label), train_args,
                        engine=engine_options(args.variant))
    print(json.dumps({"variant": args.variant, "speedups": result.engine.speedups(),
                      "ms_per_step": round(1000 * result.seconds / result.steps, 1),
                      "steps": result.steps, "train_loss": round(result.train_loss, 6),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="emotion")
    p.add_argument("--shots", type=int, default=8)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", default="default,plain")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--variant", help=argparse.SUPPRESS)  # set in the child process
    args = p.parse_args()
    if args.variant:
        run_one(args)
        return 0
    variants = args.variants.split(",")
    for name in variants:
        try:
            engine_options(name)
        except (ValueError, TypeError) as exc:
            p.error(f"--variants: {exc}")
    rows = []
    for repeat in range(args.repeats):
        for name in variants if repeat % 2 == 0 else variants[::-1]:
            started = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", name],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
    for name in variants:
        times = sorted(r["ms_per_step"] for r in rows if r["variant"] == name)
        print(f"{name}: ms/step best {times[0]}, median {times[len(times) // 2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

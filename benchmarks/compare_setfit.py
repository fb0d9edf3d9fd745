"""Side-by-side benchmark: setfit_core (default recipe and preset="fast") vs setfit==1.2.0 vs the frozen probe,
on the same few-shot samples and model.

    python benchmarks/compare_setfit.py --datasets sst2 --shots 8 --seeds 0 --test-rows 200   # smoke run
    python benchmarks/compare_setfit.py --datasets hwu64 --classes 8,64 --shots 8 --device cuda  # many classes
    python benchmarks/compare_setfit.py --summarize benchmarks/results/<timestamp>             # rebuild report
    python benchmarks/compare_setfit.py --pairs-memory                                         # 2x8 vs 5x64 RSS
    python benchmarks/compare_setfit.py --pairs-memory --gradient-checkpointing                # the same, checkpointed
    python benchmarks/compare_setfit.py --predict --threads 2                  # predict texts/s, torch vs ONNX
    python benchmarks/compare_setfit.py --predict --device cuda --predict-repeat-texts 12  # GPU: fp32 vs fp16/bf16

Every (library, dataset, shots, seed) run is a fresh subprocess (`--worker '<json spec>'`), so its peak RSS
and CUDA peak are its own. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The working tree's setfit_core is the one under test, installed or not (e.g. on the GPU machine).
sys.path.insert(1, str(REPO))

# setfit_core: setfit's default recipe; fast: setfit_core with preset="fast"; setfit: setfit 1.2.0's default
# recipe; probe: the frozen-probe baseline (the untouched body, the LogisticRegression head alone).
LIBRARIES = ("setfit_core", "fast", "setfit", "probe")
# Set for every worker (the caller's own values win): nothing may reach a hub, no tracker may start,
# tokenizers must not fork threads, and no progress bars (transformers' "Loading weights" bar follows
# huggingface_hub's switch; datasets' "Map" bar has its own) clutter the logs or cost time.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true",
              "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
# --pairs-memory: (name, classes, shots). 5x64 with oversampling is the pair explosion (81,920 pairs uncapped).
PAIRS_DATASET, PAIRS_CASES = "sst5", (("2x8", 2, 8), ("5x64", 5, 64))
PAIRS_RSS_TARGET = 1.10
# --predict, per --device: the variants, and the ratio of texts/s over setfit 1.2.0's `predict` each must reach
# (CPU: 2 threads; GPU: setfit at its default batch of 32). ONNX runs on the CPU only (onnxruntime's CPU build).
PREDICT_VARIANTS = {"cpu": ("setfit", "torch", "onnx_fp32", "onnx_int8"),
                    "cuda": ("setfit", "setfit_b256", "torch", "torch_fp16", "torch_bf16")}
# On a GPU the goal is the torch path's (large length-sorted batches, tokenising ahead); float16/bfloat16 are
# reported beside it: with MiniLM the H200 waits on the host's tokenising, so they gain nothing there.
PREDICT_GOALS = {"cpu": {"onnx_fp32": 1.5, "onnx_int8": 2.5}, "cuda": {"torch": 2.0}}


def _csv(kind: type) -> Any:
    def parse(text: str) -> list:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}")
        return items

    return parse


def _libraries(text: str) -> list[str]:
    libs = _csv(str)(text)
    bad = [x for x in libs if x not in LIBRARIES]
    if bad or len(set(libs)) != len(libs):
        raise argparse.ArgumentTypeError(f"--libraries must be distinct names from {list(LIBRARIES)}; got {text!r}")
    return libs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=_csv(str), default=["sst2", "emotion"])
    p.add_argument("--shots", type=_csv(int), default=[8, 64], help="examples per class")
    p.add_argument("--seeds", type=_csv(int), default=[0, 1, 2])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each run (default: as is)")
    p.add_argument("--libraries", type=_libraries, default=list(LIBRARIES))
    p.add_argument("--classes", type=_csv(int), default=None,
                   help="also run each dataset cut to its first N labels (ascending), for each N; default: all")
    p.add_argument("--test-rows", type=int, default=None, help="evaluate on this many test rows (default: all)")
    p.add_argument("--data-root", default="/work/shared/data")
    p.add_argument("--model", default=None, help="model directory (default: setfit_core.default_model_path())")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/<timestamp>")
    p.add_argument("--amp", action="store_true", help="use_amp=True for both libraries")
    p.add_argument("--summarize", type=Path, metavar="DIR", help="only rebuild DIR/summary.md/png from results.jsonl")
    p.add_argument("--pairs-memory", action="store_true", help="peak RSS of 2x8 vs 5x64 oversampling, per library")
    p.add_argument("--pairs-max-steps", type=int, default=30, help="max_steps for --pairs-memory runs")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="--pairs-memory runs with TrainingArguments(gradient_checkpointing=True)")
    p.add_argument("--predict", action="store_true",
                   help="prediction texts/s: setfit 1.2.0 vs setfit_core torch vs ONNX fp32 vs int8, one trained model "
                   "(the first of --datasets/--shots/--seeds), plus the peak RSS of streaming --stream-rows rows")
    p.add_argument("--repeats", type=int, default=3, help="--predict: runs per variant, the variants alternating")
    p.add_argument("--predict-repeat-texts", type=int, default=1, metavar="K",
                   help="--predict: predict K copies of the test split in one call (a GPU needs tens of thousands "
                   "of texts for a steady rate); the warm-up before it stays untimed")
    p.add_argument("--stream-rows", type=_csv(int), default=[100_000, 1_000_000],
                   help="--predict: synthetic Parquet sizes for the streaming peak-RSS check (0: skip; CPU only)")
    p.add_argument("--worker", metavar="SPEC_JSON", help=argparse.SUPPRESS)  # internal: one run
    return p


def check_args(args: argparse.Namespace) -> None:
    for name in ("threads", "test_rows", "pairs_max_steps", "predict_repeat_texts"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be a positive int; got {value!r}")
    if args.gradient_checkpointing and not args.pairs_memory:
        raise SystemExit("--gradient-checkpointing applies to --pairs-memory runs only (both libraries run the "
                         "default recipe otherwise)")
    if "setfit" in args.libraries and importlib.util.find_spec("setfit") is None:
        raise SystemExit("setfit is not installed here: pip install -e '.[bench]' for setfit==1.2.0, or pass "
                         "--libraries setfit_core")
    if min(args.shots) <= 0:
        raise SystemExit(f"--shots must be positive ints; got {args.shots!r}")
    if args.classes is not None and min(args.classes) < 2:
        raise SystemExit(f"--classes must be ints >= 2; got {args.classes!r}")
    if args.model is not None and not Path(args.model).is_dir():
        raise SystemExit(f"--model {args.model!r} is not a directory; pass a saved sentence-transformers model")
    for name in [PAIRS_DATASET] if args.pairs_memory else args.datasets:
        if not (Path(args.data_root) / name / "train.parquet").exists():
            raise SystemExit(f"no {name}/train.parquet under --data-root {args.data_root!r}")


# ---- orchestration -------------------------------------------------------------------------------


def run_order(args: argparse.Namespace) -> Iterator[tuple[str, int | None, int, int, str]]:
    """(dataset, classes, shots, seed, library) in ABBA order: libraries alternate who goes first per seed, so
    a machine that warms up, throttles or gets busier over time hits every library alike."""
    for dataset in args.datasets:
        for classes in args.classes or [None]:
            for shots in args.shots:
                for i, seed in enumerate(args.seeds):
                    for library in args.libraries if i % 2 == 0 else args.libraries[::-1]:
                        yield dataset, classes, shots, seed, library


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {"device": args.device, "threads": args.threads, "amp": args.amp,
            "data_root": str(args.data_root), "model": args.model, "test_rows": args.test_rows}


def spawn(spec: dict[str, Any], out: Path, name: str) -> dict[str, Any] | None:
    """Run one worker in a fresh interpreter; its output goes to out/logs/<name>.log. None if it failed."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    spec = {**spec, "result_path": str(out / "runs" / f"{name}.json")}
    env = {**WORKER_ENV, **os.environ}
    log_path = out / "logs" / f"{name}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    wall = time.perf_counter() - started
    if rc != 0:
        tail = log_path.read_text().splitlines()[-15:]
        print(f"  FAILED {name} (exit {rc}, {wall:.0f} s); last lines of {log_path}:", *tail, sep="\n    ",
              file=sys.stderr)
        return None
    result = json.loads(Path(spec["result_path"]).read_text())
    result["process_wall_s"] = wall
    return result


def _brief(r: dict[str, Any]) -> str:
    steps = f" ({r['body_steps']} steps, {r['steps_per_s']:.2f}/s)" if r.get("body_steps") else ""
    return (f"load {r['load_s']:.1f} s, body {r['body_s']:.1f} s{steps}, head {r['head_s']:.2f} s, "
            f"predict {r['predict_texts_per_s']:.0f} texts/s, "
            f"RSS {r['peak_rss_mib']:.0f} MiB, acc {r['accuracy']:.3f}, F1 {r['macro_f1']:.3f}")


def run_matrix(args: argparse.Namespace, out: Path) -> int:
    from _report import write_summary  # pandas only; kept out of the workers' import path

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v)
                                                 for k, v in vars(args).items()}, indent=2))
    runs, failed = list(run_order(args)), 0
    for n, (dataset, classes, shots, seed, library) in enumerate(runs, 1):
        cut = f"-{classes}classes" if classes else ""
        name = f"{library}-{dataset}{cut}-{shots}shot-seed{seed}"
        print(f"[{n}/{len(runs)}] {name}", flush=True)
        spec = {**base_spec(args), "kind": "run", "library": library, "dataset": dataset, "classes": classes,
                "shots": shots, "seed": seed}
        result = spawn(spec, out, name)
        if result is None:
            failed += 1
            with (out / "failures.jsonl").open("a") as f:
                f.write(json.dumps({**spec, "log": str(out / "logs" / f"{name}.log")}) + "\n")
            continue
        with (out / "results.jsonl").open("a") as f:  # appended per run: a crash later loses nothing
            f.write(json.dumps(result) + "\n")
        print(f"  {_brief(result)}", flush=True)
    if (out / "results.jsonl").exists():
        write_summary(out)
        print((out / "summary.md").read_text())
    print(f"results in {out}" + (f"; {failed} run(s) failed, see failures.jsonl" if failed else ""))
    return 1 if failed else 0


def run_pairs_memory(args: argparse.Namespace, out: Path) -> int:
    """Peak RSS on 2x8 and 5x64 oversampling (sst5), each in a fresh process, for each of --libraries (the
    libraries alternate). The verdict is setfit_core's ratio; setfit's runs put it in context (setfit holds its
    pairs as a dataset of text pairs and encodes every text of every step)."""
    out.mkdir(parents=True, exist_ok=True)
    libraries = [lib for lib in args.libraries if lib in ("setfit_core", "setfit")]  # the pair recipe's two
    if args.gradient_checkpointing and "setfit" in libraries:
        print("setfit has no gradient checkpointing switch in its TrainingArguments: its runs are left out")
        libraries = [lib for lib in libraries if lib != "setfit"]
    results: dict[str, dict[str, dict[str, Any]]] = {lib: {} for lib in libraries}
    for i, (name, classes, shots) in enumerate(PAIRS_CASES):
        for library in libraries if i % 2 == 0 else libraries[::-1]:
            spec = {**base_spec(args), "kind": "pairs", "library": library, "dataset": PAIRS_DATASET,
                    "classes": classes, "shots": shots, "seed": args.seeds[0], "max_steps": args.pairs_max_steps,
                    "gradient_checkpointing": args.gradient_checkpointing}
            result = spawn(spec, out, f"pairs-memory-{library}-{name}")
            if result is None:
                return 1
            results[library][name] = result
            print(f"{library} {name}: peak RSS {result['peak_rss_mib']:.0f} MiB (after model load "
                  f"{result['peak_rss_after_load_mib']:.0f} MiB), {result['body_steps']} steps over "
                  f"{result['body_pairs']} pairs, body {result['body_s']:.1f} s")
    ratios = {lib: cases["5x64"]["peak_rss_mib"] / cases["2x8"]["peak_rss_mib"] for lib, cases in results.items()}
    summary: dict[str, Any] = {"cases": results, "gradient_checkpointing": args.gradient_checkpointing,
                               "rss_ratio_5x64_over_2x8": ratios, "target": PAIRS_RSS_TARGET}
    for lib, ratio in ratios.items():
        print(f"{lib}: peak RSS ratio 5x64 / 2x8 = {ratio:.3f}")
    if "setfit_core" in results and "setfit" in results:
        share = results["setfit_core"]["5x64"]["peak_rss_mib"] / results["setfit"]["2x8"]["peak_rss_mib"]
        summary["setfit_core_5x64_over_setfit_2x8"] = share
        print(f"setfit_core's 5x64 peak is {share:.2f}x setfit's 2x8 peak")
    verdict = None
    if "setfit_core" in ratios:
        verdict = "PASS" if ratios["setfit_core"] <= PAIRS_RSS_TARGET else "FAIL"
        print(f"setfit_core's ratio {ratios['setfit_core']:.3f} (target <= {PAIRS_RSS_TARGET}): {verdict}")
    summary["verdict"] = verdict
    (out / "pairs_memory.json").write_text(json.dumps(summary, indent=2))
    print(f"see {out}")
    return 0 if verdict != "FAIL" else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        from _workers import worker_main  # torch is imported only in workers

        worker_main(args.worker)
        return 0
    if args.summarize:
        from _report import write_summary

        write_summary(args.summarize)
        print((args.summarize / "summary.md").read_text())
        return 0
    check_args(args)
    out = args.out or HERE / "results" / time.strftime("%Y%m%d-%H%M%S")
    if args.predict:
        from _predict_report import run_predict

        return run_predict(args, out)
    return run_pairs_memory(args, out) if args.pairs_memory else run_matrix(args, out)


if __name__ == "__main__":
    sys.exit(main())

"""compare_setfit.py --predict: orchestration and the table (workers: _predict_workers.py).

One model is trained (setfit_core, setfit's default recipe, the first of --datasets / --shots / --seeds) and
saved for every variant; then each variant (`PREDICT_VARIANTS` of --device) predicts the whole test split
(--predict-repeat-texts copies of it) in a fresh process, --repeats times, the order alternating (ABCD, DCBA,
...). Reported: median texts/s, its ratio to setfit 1.2.0's, accuracy, agreement with setfit_core's float32
torch predictions, and the goals (`PREDICT_GOALS`). Then the streaming check: `predict_to_parquet` over synthetic
Parquet files of --stream-rows rows, peak RSS per size (the ONNX int8 model on a CPU, the torch one on a GPU).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import compare_setfit
import numpy as np
from compare_setfit import PREDICT_GOALS, PREDICT_VARIANTS, base_spec


def run_predict(args, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "models"
    common = {**base_spec(args), "dataset": args.datasets[0], "shots": args.shots[0], "seed": args.seeds[0],
              "work": str(work), "repeat_texts": args.predict_repeat_texts}
    print(f"training one model on {common['dataset']} {common['shots']}-shot, seed {common['seed']}", flush=True)
    if compare_setfit.spawn({**common, "kind": "predict-prepare"}, out, "predict-prepare") is None:
        return 1
    variants = [v for v in PREDICT_VARIANTS[args.device] if not v.startswith("setfit") or "setfit" in args.libraries]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for variant in variants if repeat % 2 == 0 else variants[::-1]:
            name = f"predict-{variant}-{repeat}"
            result = compare_setfit.spawn({**common, "kind": "predict", "variant": variant}, out, name)
            if result is None:
                return 1
            result["predictions"] = np.load(out / "runs" / f"{name}.npy")
            runs[variant].append(result)
            print(f"  {variant} #{repeat}: {result['predict_texts_per_s']:.0f} texts/s, acc {result['accuracy']:.4f}, "
                  f"host probe {result['host_probe_start_ms']:.0f}/{result['host_probe_end_ms']:.0f} ms", flush=True)
    rows = predict_rows(runs, PREDICT_GOALS[args.device])
    streams = [stream_row(common, out, rows_) for rows_ in args.stream_rows if rows_ > 0]
    if any(s is None for s in streams):
        return 1
    table = predict_table(rows, streams, args)
    (out / "predict.md").write_text(table)
    with (out / "predict.jsonl").open("w") as f:
        for row in [*rows, *streams]:
            f.write(json.dumps({"table": "predict", **row}) + "\n")
    print(table)
    print(f"see {out}")
    return 0


def predict_rows(runs: dict[str, list[dict[str, Any]]], goals: dict[str, float]) -> list[dict[str, Any]]:
    base = runs.get("setfit") or runs["torch"]
    base_rate = statistics.median(r["predict_texts_per_s"] for r in base)
    reference = runs["torch"][0]["predictions"]
    rows = []
    for variant, results in runs.items():
        rates = [r["predict_texts_per_s"] for r in results]
        rows.append({
            "variant": variant, "texts_per_s": statistics.median(rates), "texts_per_s_min": min(rates),
            "texts_per_s_max": max(rates), "vs_setfit": statistics.median(rates) / base_rate,
            "accuracy": results[0]["accuracy"], "macro_f1": results[0]["macro_f1"],
            "agreement_with_torch": float((results[0]["predictions"] == reference).mean()),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in results),
            "host_probe_ms": statistics.median(r["host_probe_start_ms"] for r in results),
            "goal": goals.get(variant), "threads": results[0]["torch_threads"],
            "cpu_model": results[0]["cpu_model"], "versions": results[0]["versions"],
            "device": results[0].get("device"), "device_name": results[0].get("device_name"),
            "texts": results[0].get("num_test"), "batch_size": results[0].get("batch_size"),
            "peak_gpu_mib": results[0].get("peak_gpu_mib"),
        })
    return rows


def stream_row(common: dict[str, Any], out: Path, rows: int) -> dict[str, Any] | None:
    variant = "onnx_int8" if common["device"] == "cpu" else "torch"  # no GPU onnxruntime here
    spec = {**common, "kind": "stream", "variant": variant, "rows": rows}
    result = compare_setfit.spawn(spec, out, f"stream-{rows}")
    if result is None:
        return None
    print(f"  stream {rows:,} rows: {result['predict_texts_per_s']:.0f} texts/s, peak RSS "
          f"{result['peak_rss_after_predict_mib']:.0f} MiB", flush=True)
    return {"variant": f"stream {variant}", "rows": rows, "texts_per_s": result["predict_texts_per_s"],
            "peak_rss_mib": result["peak_rss_after_predict_mib"], "output_rows": result["output_rows"]}


def predict_table(rows: list[dict[str, Any]], streams: list[dict[str, Any]], args) -> str:
    copies = f" ×{args.predict_repeat_texts}" if args.predict_repeat_texts > 1 else ""
    where = f"{rows[0]['threads']} threads, {rows[0]['cpu_model']}"
    if args.device != "cpu":
        where = f"{rows[0]['device_name']} (host: {where})"
    lines = [f"Prediction, {args.datasets[0]} test split{copies} ({rows[0]['texts'] or '?'} texts), {where}; "
             f"median of {args.repeats} fresh processes (min-max).", "",
             "| variant | batch | texts/s | × setfit 1.2.0 | goal | accuracy | agreement with torch | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = "–" if r["goal"] is None else f"≥ {r['goal']}× ({'met' if r['vs_setfit'] >= r['goal'] else 'NOT met'})"
        spread = f"{r['texts_per_s_min']:.0f}–{r['texts_per_s_max']:.0f}"
        batch = r["batch_size"] or "default"
        lines.append(f"| {r['variant']} | {batch} | {r['texts_per_s']:.0f} ({spread}) | {r['vs_setfit']:.2f}× | {goal} "
                     f"| {r['accuracy']:.4f} | {r['agreement_with_torch']:.4f} | {r['peak_rss_mib']:.0f} |")
    if streams:
        lines += ["", "| streamed predict_to_parquet | rows | texts/s | peak RSS MiB |", "|---|---|---|---|"]
        lines += [f"| synthetic Parquet, {s['variant'].removeprefix('stream ')} | {s['rows']:,} "
                  f"| {s['texts_per_s']:.0f} | {s['peak_rss_mib']:.0f} |" for s in streams]
    return "\n".join(lines) + "\n"

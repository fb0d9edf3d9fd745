"""summary.md and summary.png from a results.jsonl (standard library + numpy/pandas; matplotlib optional)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

GROUP = ["dataset", "num_classes", "shots", "device", "amp"]
BASELINE, PROBE = "setfit", "probe"
# Rows of each table, in this order; each trained library gets a ratio row against setfit and a gain over the probe.
LIBRARIES = ("setfit_core", "fast", "setfit", "probe")
TRAINED = ("setfit_core", "fast")
# (column, header, format); peak_gpu_mib only shows when some run was on cuda.
METRICS = [
    ("body_s", "body s", "{:.1f}"),
    ("head_s", "head s", "{:.2f}"),
    ("steps_per_s", "steps/s", "{:.2f}"),
    ("predict_texts_per_s", "predict texts/s", "{:.0f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("peak_gpu_mib", "peak GPU MiB", "{:.0f}"),
    ("accuracy", "accuracy", "{:.3f}"),
    ("macro_f1", "macro-F1", "{:.3f}"),
]


def load_results(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{str(path)!r} holds no results")
    return pd.DataFrame(rows)


def _mean_std(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return fmt.format(values.iloc[0])
    return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))}"


def _ratio_cells(base: pd.DataFrame, cand: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """Ratios of means, oriented so that > 1 means the candidate is better; differences in points."""
    def mean(df: pd.DataFrame, col: str) -> float:
        return float(df[col].mean()) if col in df and df[col].notna().any() else float("nan")

    cells = {}
    for col in columns:
        b, c = mean(base, col), mean(cand, col)
        if col in ("body_s", "head_s"):
            cells[col] = f"**{b / c:.2f}×**" if col == "body_s" else f"{b / c:.2f}×"
        elif col in ("steps_per_s", "predict_texts_per_s"):
            cells[col] = f"{c / b:.2f}×"
        elif col in ("peak_rss_mib", "peak_gpu_mib"):
            cells[col] = f"{c / b:.2f}×"
        else:
            cells[col] = f"{100 * (c - b):+.1f} pt"
        if np.isnan(b) or np.isnan(c):
            cells[col] = "–"
    return cells


def config_label(key: tuple) -> str:
    dataset, classes, shots, device, amp = key
    return f"{dataset} ({classes} classes) {shots}-shot, {device}" + (", amp" if amp else "")


def _probe_note(df: pd.DataFrame) -> str:
    """Range of the fixed-workload host probe: a wide range means other load on the machine skewed timings."""
    cols = [c for c in ("host_probe_start_ms", "host_probe_end_ms") if c in df]
    if not cols:
        return ""
    values = df[cols].to_numpy(dtype=float).ravel()
    return f"; host probe {np.nanmin(values):.0f}–{np.nanmax(values):.0f} ms (fixed workload; wide = noisy machine)"


def config_table(key: tuple, df: pd.DataFrame) -> list[str]:
    columns = [c for c, _, _ in METRICS if c in df and df[c].notna().any()]
    headers = {c: h for c, h, _ in METRICS}
    formats = {c: f for c, _, f in METRICS}
    hardware = ", ".join(sorted(set(df.device_name.dropna().astype(str)) | set(df.cpu_model.dropna().astype(str))))
    threads = ", ".join(str(t) for t in sorted(df.torch_threads.unique()))
    lines = [f"### {config_label(key)}", "",
             f"{hardware}; torch threads {threads}; seeds {sorted(df.seed.unique().tolist())}; "
             f"test rows {sorted(df.num_test.unique().tolist())}{_probe_note(df)}", "",
             "| library | n | " + " | ".join(headers[c] for c in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for library in LIBRARIES:
        part = df[df.library == library]
        if not part.empty:
            cells = [_mean_std(part[c], formats[c]) for c in columns]
            lines.append(f"| {library} | {len(part)} | " + " | ".join(cells) + " |")
    accuracy = [c for c in columns if c in ("accuracy", "macro_f1")]
    for library in TRAINED:
        for base in (BASELINE, PROBE):
            if library in set(df.library) and base in set(df.library):
                ratios = _ratio_cells(df[df.library == base], df[df.library == library], columns)
                shown = columns if base == BASELINE else accuracy  # against the probe only accuracy means anything
                lines.append(f"| {library} vs {base} | | " + " | ".join(ratios[c] if c in shown else ""
                                                                          for c in columns) + " |")
    return lines + [""]


def classes_table(df: pd.DataFrame) -> list[str]:
    """Accuracy of every library per (dataset, classes, shots), fewest classes first: where fine-tuning pays."""
    present = [lib for lib in LIBRARIES if lib in set(df.library)]
    lines = ["## Accuracy by number of classes", "",
             "| dataset | classes | shots | device | " + " | ".join(present) + " | fast − setfit | fast − probe "
             "| fast time / setfit time |", "|---|---:|---:|---|" + "---:|" * (len(present) + 3)]
    for (classes, dataset, shots, device), part in df.groupby(["num_classes", "dataset", "shots", "device"]):
        mean = {lib: part[part.library == lib] for lib in present}
        acc = {lib: float(p.accuracy.mean()) if len(p) else float("nan") for lib, p in mean.items()}
        cells = [f"{acc[lib]:.3f}" if np.isfinite(acc[lib]) else "–" for lib in present]
        time = "–"
        if "fast" in mean and BASELINE in mean and len(mean["fast"]) and len(mean[BASELINE]):
            time = f"{mean['fast'].body_s.mean() / mean[BASELINE].body_s.mean():.1%}"
        lines.append(f"| {dataset} | {classes} | {shots} | {device} | " + " | ".join(cells)
                     + f" | {_gain(acc, 'fast', BASELINE)} | {_gain(acc, 'fast', PROBE)} | {time} |")
    return lines + [""]


def _gain(acc: dict[str, float], a: str, b: str) -> str:
    gain = 100 * (acc.get(a, np.nan) - acc.get(b, np.nan))
    return f"{gain:+.1f} pt" if np.isfinite(gain) else "–"


def versions_line(df: pd.DataFrame) -> str:
    seen: dict[str, set] = {}
    for v in df.versions:
        for name, version in v.items():
            seen.setdefault(name, set()).add(str(version))
    return ", ".join(f"{name} {'/'.join(sorted(vs))}" for name, vs in sorted(seen.items()))


def write_summary(out: Path) -> None:
    out = Path(out)
    df = load_results(out / "results.jsonl")
    groups = list(df.groupby(GROUP, sort=True))
    lines = ["# setfit_core vs setfit 1.2.0 vs the frozen probe", "",
             "Libraries: setfit_core (setfit's default recipe), fast (setfit_core with preset=\"fast\"), setfit "
             "(1.2.0, default recipe), probe (the untouched body with the LogisticRegression head: what the body "
             "gave before fine-tuning). Mean ± std over seeds (one fresh process per run). Ratio rows against "
             "setfit: body/head speed-up = setfit s / ours; steps/s and predict = ours / setfit; memory = ours / "
             "setfit; accuracy and macro-F1 = ours − setfit in points. Rows against the probe: accuracy and "
             "macro-F1 gained by fine-tuning, in points.", "", f"Versions: {versions_line(df)}", ""]
    lines += classes_table(df)
    for key, part in groups:
        lines += config_table(key, part)
    failures = out / "failures.jsonl"
    if failures.exists():
        lines.append(f"{len(failures.read_text().splitlines())} run(s) failed: see failures.jsonl and logs/.")
    png_note = write_png(out / "summary.png", groups)
    if png_note:
        lines.append(png_note)
    (out / "summary.md").write_text("\n".join(lines).rstrip() + "\n")


def write_png(path: Path, groups: list[tuple[tuple, pd.DataFrame]]) -> str | None:
    """Bar chart of body seconds per config, both libraries, speed-up annotated. Returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; the GPU machine has no display
        import matplotlib.pyplot as plt
    except ImportError:
        note = "summary.png skipped: matplotlib is not installed (pip install matplotlib, then --summarize DIR)."
        print(note, file=sys.stderr)
        return note
    labels = [config_label(k).replace(" classes) ", " classes)\n") for k, _ in groups]
    x, width = np.arange(len(groups)), 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(groups)), 4.5))
    tops = np.zeros(len(groups))
    for offset, library in ((-width / 2, BASELINE), (width / 2, "setfit_core")):
        parts = [g[g.library == library].body_s for _, g in groups]
        means = np.array([p.mean() if len(p) else np.nan for p in parts])
        stds = np.array([p.std(ddof=1) if len(p) > 1 else 0.0 for p in parts])
        ax.bar(x + offset, means, width, yerr=stds, capsize=3, label=library)
        tops = np.fmax(tops, np.nan_to_num(means + stds))
    for i, (_, g) in enumerate(groups):
        base, cand = g[g.library == BASELINE].body_s.mean(), g[g.library == "setfit_core"].body_s.mean()
        if np.isfinite(base) and np.isfinite(cand):
            ax.annotate(f"speed-up {base / cand:.1f}×", (x[i], tops[i]), ha="center", va="bottom",
                        xytext=(0, 4), textcoords="offset points", fontsize=9, fontweight="bold")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("body phase (s), mean ± std over seeds")
    ax.set_title("Contrastive body training: setfit 1.2.0 vs setfit_core")
    lows = [g[g.library.isin((BASELINE, "setfit_core"))].body_s.min() for _, g in groups]
    lows = [low for low in lows if np.isfinite(low) and low > 0] or [1.0]
    if max(tops) > 20 * max(min(lows), 1e-9):  # 8-shot bars would vanish next to 64-shot ones
        ax.set_yscale("log")
        ax.set_ylabel("body phase (s, log scale), mean ± std over seeds")
        ax.set_ylim(min(lows) / 2, max(tops) * 2.5)
    else:
        ax.set_ylim(0, max(tops.max(), 1e-9) * 1.18)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None

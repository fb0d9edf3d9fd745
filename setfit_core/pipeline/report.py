"""Run reports rendered from stage results (plain dicts, as `StageResult.to_dict` gives them).

The same rows feed the Prefect UI artifacts (markdown summary, metrics table) and the text table
`make demo` prints, so what a user sees in the terminal and in the UI cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

KEY_PREFIX = 12
# Markdown punctuation that could turn a quoted text in a warning into markup (emphasis, code, a link, HTML).
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|])")


def stage_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per stage: stage, status, seconds, key prefix, uri."""
    return [
        {"stage": stage, "status": r["status"], "seconds": round(float(r["seconds"]), 2),
         "key": r["key"][:KEY_PREFIX], "uri": r["uri"]}
        for stage, r in results.items()
    ]


def metric_rows(metrics: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per split: an "(all)" row with accuracy / macro-F1 / the metric asked for, then one row per class."""
    rows = []
    for split, report in metrics.items():
        name = report.get("metric")
        overall = {"split": split, "class": "(all)", "accuracy": _r(report["accuracy"]),
                   "macro_f1": _r(report["macro_f1"]), "rows": report.get("rows")}
        if name and name not in overall and isinstance(report.get(name), (int, float)):
            overall[name] = _r(report[name])
        for key, value in report.get("probe", {}).items():  # the frozen-probe baseline, same split
            overall[f"probe_{key}"] = _r(value)
        rows.append(overall)
        for label, scores in report["per_class"].items():
            rows.append({"split": split, "class": label, "precision": _r(scores["precision"]),
                         "recall": _r(scores["recall"]), "f1": _r(scores["f1"]), "support": scores["support"]})
    # Every row gets every column: the Prefect UI takes a table's columns from its first row.
    columns = list(dict.fromkeys(k for row in rows for k in row))
    return [{c: row.get(c) for c in columns} for row in rows]


def promotion_markdown(promotion: Mapping[str, Any]) -> str:
    """The promotion gate's decision as a summary section: the alias, promoted or not, why, both models."""
    if promotion.get("alias") is None:
        return f"\n## Promotion\n\n{markdown_text(promotion['reason'])}.\n"
    verdict = "promoted" if promotion["promoted"] else "not promoted"
    lines = ["", f"## Promotion to `{promotion['alias']}`: {verdict}", "", markdown_text(promotion["reason"]), "",
             "| | model | metric on this eval set |", "|---|---|---:|",
             f"| this run | `{promotion['model_uri']}` | {_cell(promotion.get('metric'))} |"]
    if promotion.get("previous_model_uri"):
        previous = _cell(promotion.get("previous_metric"))
        lines.append(f"| alias before | `{promotion['previous_model_uri']}` | {previous} |")
    return "\n".join(lines) + "\n"


def prediction_markdown(input_data: str, result: Mapping[str, Any]) -> str:
    """A batch prediction's summary: the model that predicted (and the alias record it came from), the output."""
    model = f"Model: `{result['model_uri']}`"
    if via := result.get("via_alias"):
        by = f" by flow run `{via['flow_run_id']}`" if via.get("flow_run_id") else ""
        model += (f", the model alias `{via['alias']}` pointed to when the run started (record version "
                  f"{via['version']}, set {via['time']}{by})")
    seconds = float(result["seconds"])
    lines = [f"# SetFit batch prediction: `{input_data}`", "", f"{model}.", "",
             f"Predicted {result['rows']} rows in {seconds:.2f} s into `{result['output_data']}`."]
    return "\n".join(lines) + "\n"


def summary_markdown(dataset: str, results: Mapping[str, Mapping[str, Any]], model_uri: str | None,
                     warnings: Sequence[str] = (), below_probe: Sequence[str] = (), phase1: str | None = None) -> str:
    """The run summary: the stages, the data-quality `warnings` (messages) if any, what `phase1` trained on,
    metrics beside the frozen-probe baseline's, the `below_probe` messages (splits where the model scored
    below it), the model."""
    rows = stage_rows(results)
    reused = sum(r["status"] == "reused" for r in rows)
    lines = [
        f"# SetFit pipeline: {dataset}",
        "",
        f"{len(rows)} stages, {reused} reused, {len(rows) - reused} computed, "
        f"{sum(r['seconds'] for r in rows):.1f} s in stages.",
        "",
    ]
    if phase1:
        lines += [f"Phase 1: {markdown_text(phase1)}.", ""]
    if warnings:
        lines += [f"## Data warnings ({len(warnings)})", "",
                  "Training went on; `strict=True` (`--strict`) stops a run on these before stage 1.", "",
                  *(f"- {markdown_text(w)}" for w in warnings), "", "## Stages", ""]
    lines += [
        "| stage | status | seconds | key | uri |",
        "|---|---|---:|---|---|",
        *(f"| {r['stage']} | {r['status']} | {r['seconds']:.2f} | `{r['key']}` | `{r['uri']}` |" for r in rows),
    ]
    evaluation = results.get("evaluation")
    if evaluation:
        lines += ["", "| split | accuracy | macro-F1 | frozen probe: accuracy | frozen probe: macro-F1 |",
                  "|---|---:|---:|---:|---:|"]
        for split, m in evaluation["metrics"].items():
            probe = m.get("probe") or {}
            lines.append(f"| {split} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {_cell(probe.get('accuracy'))} "
                         f"| {_cell(probe.get('macro_f1'))} |")
        lines += ["", "The frozen probe is the base model's untouched body with the same head: what the body "
                  "gave before fine-tuning."]
    if below_probe:
        lines += ["", "## Fine-tuning did not help", "", *(f"- **{markdown_text(m)}**" for m in below_probe)]
    if model_uri:
        lines += ["", f"Model: `{model_uri}` (load with `setfit_core.SetFitModel.from_pretrained`)."]
    return "\n".join(lines) + "\n"


def markdown_text(text: str) -> str:
    """`text` as literal markdown: a quoted text like '*bold*' or '<b>' shows as written."""
    return _MARKDOWN.sub(r"\\\1", text)


def text_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table for terminals."""
    if not rows:
        return ""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [["" if row.get(c) is None else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    pad = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()  # noqa: E731
    lines = [pad(columns), pad(["-" * w for w in widths])]
    lines += [pad(r) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "–"


def _r(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, (int, float)) else value

"""History task: record this run beside its alias, then show the last runs in the Prefect UI."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from setfit_pipeline.tasks.common import artifact_key, in_run, run_label

from setfit_core.artifacts import ArtifactStore
from setfit_core.pipeline.run_history import HISTORY_ROWS, RunHistory, history_rows, run_entry, trend_markdown


@task(name="history", task_run_name="history [{plan[dataset]}] {promotion[alias]}", cache_policy=NO_CACHE,
      persist_result=False)
def history_task(job: dict[str, Any], plan: dict[str, Any], evaluation: dict[str, Any] | None,
                 promotion: dict[str, Any], flow_run_id: str | None) -> list[dict[str, Any]]:
    """Append this run to ``<root>/aliases/<alias>.runs/<dataset>/`` and publish the last runs: a table
    (``setfit-<deployment>-<dataset>-<alias>-history``) and a trend chart (``...-<alias>-trend``). Prefect keeps
    every version of a key, so the UI shows each night's table. Returns the table's rows, newest first."""
    dataset, alias = plan["dataset"], promotion["alias"]
    history = RunHistory(ArtifactStore(job["artifacts_root"], storage_options=job["storage_options"]), alias, dataset)
    eval_metrics = (evaluation or {}).get("metrics", {}).get("eval")
    try:
        history.append(run_entry(dataset, promotion, eval_metrics, job["metric"], flow_run_id, run_label()))
        entries = history.last(HISTORY_ROWS)
    except Exception as exc:
        exc.stage = "history"  # type: ignore[attr-defined]  # the failure artifact names where the run failed
        raise
    rows = history_rows(entries)
    if in_run():
        create_table_artifact(rows, key=artifact_key(f"{alias}-history", dataset),
                              description=f"The last {HISTORY_ROWS} training runs of {dataset} against alias {alias}, "
                                          f"newest first: metric, frozen-probe baseline, promoted or not, why "
                                          f"(kept under {history.uri})")
        create_markdown_artifact(trend_markdown(entries), key=artifact_key(f"{alias}-trend", dataset),
                                 description=f"{job['metric']} of the last {len(entries)} runs of {dataset}, "
                                             "oldest first")
    return rows

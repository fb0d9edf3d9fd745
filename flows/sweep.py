"""`sweep_pipeline`: many heads on one trained body; only the best is exported and goes through the gate.

    plan-trials -> pairs -> body -> embeddings -> trial x N (head + evaluation, mapped) -> export -> promotion

The body and the embeddings of every text are trained and encoded once per distinct body config (`args` and
each `args_grid` point), or reused when the artifacts root holds them. A trial is the job with other
`head_params`: its head and evaluation stages are content-addressed like any run's, so repeating a sweep reuses
every trial. Trials run concurrently on the flow's task runner: `trials_at_once` threads, or a Dask cluster
(``task_runner="dask"``).

    head_grid=[{"C": 0.01}, {"C": 0.1}, {"C": 1.0}]                          # these points
    search_space={"C": {"type": "float", "low": 1e-3, "high": 10, "log": True}}, n_trials=20   # optuna TPE
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from setfit_pipeline.flows.train import Metric, _report
from setfit_pipeline.tasks.body import body_task
from setfit_pipeline.tasks.common import artifact_key, run_logger
from setfit_pipeline.tasks.dask_runner import ScaleOut, TaskRunnerName
from setfit_pipeline.tasks.embeddings import embeddings_task
from setfit_pipeline.tasks.export import export_task
from setfit_pipeline.tasks.history import history_task
from setfit_pipeline.tasks.pairs import pairs_task
from setfit_pipeline.tasks.promotion import promotion_task
from setfit_pipeline.tasks.sweep import plan_trials_task, trial_task

from setfit_core.pipeline import DEFAULT_MODEL, PipelineJob
from setfit_core.pipeline.promotion import PromotionGate
from setfit_core.pipeline.sweep import HeadSearch, best_trial, head_variants


@flow(name="setfit-sweep", persist_result=False)
def sweep_pipeline(
    train_data: str,
    artifacts_root: str,
    eval_data: str,
    model: str = DEFAULT_MODEL,
    args: dict[str, Any] | None = None,
    head_params: dict[str, Any] | None = None,
    head_grid: list[dict[str, Any]] | None = None,
    search_space: dict[str, Any] | None = None,
    n_trials: int = 20,
    args_grid: list[dict[str, Any]] | None = None,
    metric: Metric = "accuracy",
    metric_kwargs: dict[str, Any] | None = None,
    column_mapping: dict[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
    trials_at_once: int = 4,
    seed: int = 0,
    task_runner: TaskRunnerName = "default",
    dask_address: str | None = None,
    dask_workers: int | None = None,
    promote_to: str | None = "production",
    min_improvement: float = 0.0,
    allow_label_change: bool = False,
) -> dict[str, Any]:
    """Sweep head parameters on cached embeddings; rank trials by `metric` on `eval_data`.

    `head_grid`: the head_params points to try (each updates `head_params`), or `search_space` (optuna; needs the
    ``sweep`` extra) with `n_trials` trials, `trials_at_once` asked at a time, sampled with `seed`. `args_grid`:
    points that update `args`; each distinct body config trains once and runs every head point. Returns
    ``{"trials": [{"head_params", "args", "metrics", "stages"} or {"head_params", "args", "error"}...], "best":
    the best trial, "model_uri", "promotion", "stages", "metrics", "warnings"}``: only the best is exported and
    only it goes through the promotion gate (`promote_to`, as in `train_pipeline`).
    """
    if (head_grid is None) == (search_space is None):
        raise ValueError("pass head_grid (a list of head_params points) or search_space (an optuna search with "
                         "n_trials), exactly one of them")
    for name, value in (("n_trials", n_trials), ("trials_at_once", trials_at_once)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if not eval_data:
        raise ValueError("sweep_pipeline needs eval_data: trials are ranked on it")
    body_points = [{}] if args_grid is None else args_grid
    if not isinstance(body_points, list) or not body_points or not all(isinstance(p, dict) for p in body_points):
        raise ValueError(f"args_grid must be a non-empty list of TrainingArguments mappings; got {args_grid!r}")
    jobs = [PipelineJob.from_dict({
        "train_data": train_data, "artifacts_root": artifacts_root, "model": model, "args": {**(args or {}), **point},
        "head_params": head_params, "eval_data": eval_data, "column_mapping": column_mapping, "metric": metric,
        "metric_kwargs": metric_kwargs, "storage_options": storage_options,
    }).validate().to_dict() for point in body_points]  # argument errors surface here, before any task
    variants = head_variants(head_params, head_grid) if head_grid is not None else None
    if search_space is not None:
        HeadSearch(search_space, seed)  # optuna missing or a bad distribution: fails here, before any task
    gate = None if promote_to is None else PromotionGate(promote_to, min_improvement, allow_label_change).validate()
    scale = ScaleOut(task_runner, dask_address, dask_workers).validate()
    runner = scale.task_runner_instance() if scale.sharded else ThreadPoolTaskRunner(max_workers=trials_at_once)
    return run_sweep.with_options(task_runner=runner)(jobs, variants, search_space, seed, n_trials, trials_at_once,
                                                       None if gate is None else asdict(gate))


@flow(name="setfit-sweep-trials", persist_result=False)
def run_sweep(jobs: list[dict[str, Any]], variants: list[dict[str, Any]] | None, search_space: dict[str, Any] | None,
              seed: int, n_trials: int, trials_at_once: int, gate: dict[str, Any] | None) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    for job in jobs:  # one body config at a time; its trials run concurrently
        if variants is not None:
            trials += _trials(job, variants)
            continue
        search = HeadSearch(search_space, seed)  # one study per body config: its trials compare like with like
        while sum(t["args"] == job["args"] for t in trials) < n_trials:
            done = sum(t["args"] == job["args"] for t in trials)
            asked = search.ask(min(trials_at_once, n_trials - done))
            batch = _trials(job, [params for _, params in asked])
            for (number, _), trial in zip(asked, batch, strict=True):
                search.tell(number, None if "error" in trial else trial["metrics"]["eval"][job["metric"]])
            trials += batch
    best = best_trial(trials, jobs[0]["metric"])
    return _export_best(best, trials, gate)


def _trials(job: dict[str, Any], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plan, then the shared stages once, then every variant as a mapped trial task; failed trials say why."""
    plans = plan_trials_task(job, variants)
    trial_jobs = [{**job, "head_params": params} for params in variants]
    first, plan = trial_jobs[0], plans[0]  # a run pins its plan's keys: the shared stages run as the first trial's
    shared = {"pairs": pairs_task(first, plan)}
    shared["body"] = body_task(first, plan, shared["pairs"])
    shared["embeddings"] = embeddings_task(first, plan, shared["body"])
    futures = trial_task.map(trial_jobs, plans, unmapped(shared["embeddings"]), unmapped(shared["body"]))
    wait(futures)  # a failed trial does not cancel the others
    trials = []
    for trial_job, plan, future in zip(trial_jobs, plans, futures, strict=True):
        base = {"head_params": trial_job["head_params"], "args": job["args"]}
        if future.state.is_completed():
            trials.append({**base, **future.result(), "_job": trial_job, "_plan": plan, "_shared": shared})
            continue
        error = future.result(raise_on_failure=False)
        message = " ".join(str(error).split()) if isinstance(error, BaseException) else future.state.message
        run_logger().error("trial %s failed: %s", trial_job["head_params"], message)
        trials.append({**base, "error": message})
    return trials


def _export_best(best: dict[str, Any], trials: list[dict[str, Any]], gate: dict[str, Any] | None) -> dict[str, Any]:
    job, plan, shared = best["_job"], best["_plan"], best["_shared"]
    stages = {"pairs": shared["pairs"], "body": shared["body"], "embeddings": shared["embeddings"],
              **best["stages"]}
    stages["model"] = export_task(job, plan, stages["head"], stages["body"])
    run_id = str(flow_run.root_flow_run_id or flow_run.id) if flow_run.id else None
    if gate is None:
        promotion = {"alias": None, "promoted": False, "reason": "no promotion gate (promote_to=None)",
                     "model_uri": stages["model"]["uri"], "previous_model_uri": None, "metric": None,
                     "previous_metric": None}
    else:
        promotion = promotion_task(job, plan, stages["model"], stages["evaluation"], gate, run_id)
        history_task(job, plan, stages["evaluation"], promotion, run_id)
    public = [_public(t, job["metric"]) for t in trials]
    create_table_artifact([_row(t, job["metric"], t is best) for t in trials],
                          key=artifact_key("sweep", plan["dataset"]),
                          description=f"{len(trials)} trials ranked by {job['metric']} on eval_data; the best one "
                                      "was exported")
    result = _report(plan, stages, promotion)
    return {"trials": public, "best": _public(best, job["metric"]), **result}


def _public(trial: dict[str, Any], metric: str) -> dict[str, Any]:
    keys = ("key", "status", "seconds", "uri")
    out = {k: v for k, v in trial.items() if not k.startswith("_") and k != "stages"}
    if "stages" in trial:
        out["stages"] = {s: {k: r[k] for k in keys} for s, r in trial["stages"].items()}
    return out


def _row(trial: dict[str, Any], metric: str, best: bool) -> dict[str, Any]:
    value = trial["metrics"]["eval"][metric] if "metrics" in trial else None
    return {"head_params": str(trial["head_params"]), "args": str(trial["args"]),
            metric: None if value is None else round(value, 4), "best": "yes" if best else "",
            "head": trial["stages"]["head"]["key"][:12] if "stages" in trial else None, "error": trial.get("error")}

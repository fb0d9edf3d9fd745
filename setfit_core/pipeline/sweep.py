"""Head sweeps on one trained body: the trial grid, the trials' plans, an optuna search, the best trial.

    variants = head_variants({"max_iter": 200}, head_grid=[{"C": 0.1}, {"C": 1.0}])
    plans = trial_plans(job, variants)      # data read once; every plan shares pairs/body/embeddings keys

Every trial is the job with other `head_params`, so its head and evaluation stages get their own keys while
pairs, body and embeddings keep theirs: the body trains once, a rerun of a trial is a reuse. No Prefect here:
`flows/sweep.py` maps the trials over a task runner.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from setfit_core.pipeline.job import PipelineJob
from setfit_core.pipeline.plan import plan_stages
from setfit_core.pipeline.runner import PipelineRun

DISTRIBUTIONS = ("float", "int", "categorical")


def head_variants(head_params: dict[str, Any] | None, head_grid: list[dict[str, Any]] | None) -> list[dict]:
    """`head_params` updated by each grid point; errors name the bad point."""
    if not isinstance(head_grid, list) or not head_grid:
        raise ValueError(f"head_grid must be a non-empty list of head_params mappings, e.g. [{{'C': 0.1}}, "
                         f"{{'C': 1.0}}]; got {head_grid!r}")
    variants = []
    for index, point in enumerate(head_grid):
        if not isinstance(point, dict):
            raise ValueError(f"head_grid[{index}] must be a mapping of head parameters; got {point!r}")
        variants.append({**(head_params or {}), **point})
    return variants


def trial_plans(job: PipelineJob, variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A `PipelineRun.summary()` per head variant of `job`, the data read and validated once."""
    run = PipelineRun(job)
    base = run.summary()
    plans = []
    for params in variants:
        variant = replace(job, head_params=dict(params)).validate()
        plans.append({**base, "keys": {stage: spec.key for stage, spec in plan_stages(variant, run.data).items()}})
    return plans


def best_trial(trials: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The trial with the highest `metric` on eval (the first of equals); failed trials never win."""
    scored = [t for t in trials if "error" not in t]
    if not scored:
        errors = "; ".join(f"{t['head_params']}: {t['error']}" for t in trials[:3])
        raise ValueError(f"every trial of the sweep failed, so there is no model to export ({errors})")
    return max(scored, key=lambda t: t["metrics"]["eval"][metric])


class HeadSearch:
    """An optuna study over head parameters, asked for a batch of trials at a time (they run concurrently).

    `search_space`: ``{"C": {"type": "float", "low": 0.001, "high": 10, "log": true}, "max_iter": {"type": "int",
    "low": 100, "high": 400}, "solver": {"type": "categorical", "choices": ["lbfgs", "liblinear"]}}``.
    """

    def __init__(self, search_space: dict[str, Any], seed: int = 0) -> None:
        try:
            import optuna
        except ImportError:
            raise ImportError("search_space needs optuna: install the sweep extra, `pip install "
                              "'setfit-pipeline[sweep]'` (or `pip install optuna`); head_grid needs nothing extra"
                              ) from None
        self._distributions = _distributions(optuna, search_space)
        self._study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        self._asked: dict[int, Any] = {}

    def ask(self, count: int) -> list[tuple[int, dict[str, Any]]]:
        """`count` new trials: (number, head parameters)."""
        asked = []
        for _ in range(count):
            trial = self._study.ask(self._distributions)
            self._asked[trial.number] = trial
            asked.append((trial.number, dict(trial.params)))
        return asked

    def tell(self, number: int, value: float | None) -> None:
        """The trial's metric, or None for a failed trial."""
        import optuna

        trial = self._asked.pop(number)
        if value is None or math.isnan(value):
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)


def _distributions(optuna: Any, space: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(space, dict) or not space:
        raise ValueError(f"search_space must be a non-empty mapping of head parameter -> distribution, e.g. "
                         f"{{'C': {{'type': 'float', 'low': 0.01, 'high': 10, 'log': True}}}}; got {space!r}")
    made = {}
    for name, spec in space.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        try:
            if kind == "float":
                made[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec.get("log",
                                                                                                            False))
            elif kind == "int":
                made[name] = optuna.distributions.IntDistribution(spec["low"], spec["high"], log=spec.get("log", False))
            elif kind == "categorical":
                made[name] = optuna.distributions.CategoricalDistribution(spec["choices"])
            else:
                raise ValueError(f"type must be one of {list(DISTRIBUTIONS)}")
        except (KeyError, ValueError, TypeError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"search_space[{name!r}] is not a distribution ({detail}): use {{'type': 'float', "
                             f"'low': ..., 'high': ..., 'log': bool}}, {{'type': 'int', ...}} or {{'type': "
                             f"'categorical', 'choices': [...]}}; got {spec!r}") from None
    return made

"""`setfit-pipeline retrain-many`, `setfit-pipeline sweep` and `setfit-pipeline data-updated`.

    setfit-pipeline retrain-many runs.yaml --max-concurrent 2
    setfit-pipeline data-updated --dataset acme --uri s3://bucket/acme/train.parquet \
        --eval-uri s3://bucket/acme/test.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from setfit_pipeline.flows import prefect_ops


def add_retrain_parsers(commands: Any, add_scale_flags: Any, add_verbose: Any) -> None:
    many = commands.add_parser(
        "retrain-many", help="train every config of a YAML/JSON file, concurrently, one train subflow each",
        description="Run retrain_many: one train_pipeline subflow per config in CONFIGS (a list of train "
        "parameters, or `defaults:` and `runs:`). A failing run does not stop the others; the exit status is 1 "
        "when any failed.")
    many.add_argument("configs", help="YAML or JSON file of training configs")
    many.add_argument("--max-concurrent", type=int, default=2, help="runs at a time (default: 2)")
    many.add_argument("--concurrency-limit", metavar="NAME",
                      help="a Prefect global concurrency limit each run holds a slot of (`prefect gcl create`)")
    add_scale_flags(many, "the runs")
    add_verbose(many)
    many.set_defaults(func=_retrain_many)

    sweep = commands.add_parser(
        "sweep", help="try many heads on one trained body; export and gate only the best",
        description="Run sweep_pipeline: the body and embeddings once (or reused), then one head + evaluation per "
        "trial, concurrently; the best trial on --eval-data is exported and goes through the promotion gate.")
    sweep.add_argument("--train-data", required=True, help="Parquet / CSV / JSONL with text and label columns")
    sweep.add_argument("--eval-data", required=True, help="the split trials are ranked on")
    sweep.add_argument("--artifacts-root", required=True, help="directory or s3://bucket/prefix for the stages")
    sweep.add_argument("--model", help="sentence-transformers model (default: the bundled all-MiniLM-L6-v2)")
    sweep.add_argument("--metric", default="accuracy", help="what ranks the trials (default: accuracy)")
    sweep.add_argument("--args", type=_json(dict), default={}, help='TrainingArguments as JSON, e.g. \'{"seed": 0}\'')
    sweep.add_argument("--head-params", type=_json(dict), help="head parameters every trial starts from")
    sweep.add_argument("--head-grid", type=_json(list), help='head points as JSON, e.g. \'[{"C": 0.1}, {"C": 1}]\'')
    sweep.add_argument("--search-space", type=_json(dict),
                       help='optuna search as JSON, e.g. \'{"C": {"type": "float", "low": 0.001, "high": 10, '
                       '"log": true}}\' (needs the sweep extra)')
    sweep.add_argument("--n-trials", type=int, default=20, help="trials of --search-space (default: 20)")
    sweep.add_argument("--args-grid", type=_json(list), help="body points as JSON; each trains one body")
    sweep.add_argument("--trials-at-once", type=int, default=4, help="concurrent trials (default: 4)")
    sweep.add_argument("--promote-to", default="production", help="alias for the best model (default: production)")
    sweep.add_argument("--no-promote", action="store_true", help="no promotion gate")
    sweep.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    add_verbose(sweep)
    sweep.set_defaults(func=_sweep)

    updated = commands.add_parser(
        "data-updated", help="emit setfit.data.updated: the nightly-retrain deployment's trigger retrains now",
        description="Needs PREFECT_API_URL. Emits the event that nightly-retrain's trigger reacts to: a run with "
        "train_data and eval_data from the event, beside the nightly schedule.")
    updated.add_argument("--dataset", required=True, help="the dataset's name, e.g. acme")
    updated.add_argument("--uri", required=True, help="its training data (path on the worker or s3:// URI)")
    updated.add_argument("--eval-uri", help="its eval data: the promotion gate compares models on it")
    updated.add_argument("--no-eval", action="store_true",
                         help="train without eval data (the run cannot promote); instead of --eval-uri")
    updated.set_defaults(func=_data_updated)


def _retrain_many(cli: argparse.Namespace) -> int:
    from setfit_pipeline.flows.cli import _flow_run, _scale_out
    from setfit_pipeline.flows.retrain_configs import load_configs

    if cli.max_concurrent < 1:
        raise ValueError(f"--max-concurrent must be >= 1; got {cli.max_concurrent}")
    if cli.shards is not None:
        raise ValueError("--shards does not apply to retrain-many (each run is one task); drop it")
    load_configs(cli.configs)  # a broken file: one line now, before Prefect starts
    scale = {k: v for k, v in _scale_out(vars(cli)).items() if k != "shards"}
    prefect_ops.apply_run_defaults()
    from setfit_pipeline.flows.retrain_many import RetrainFailures, retrain_many

    from setfit_core.pipeline.report import text_table

    with _flow_run(cli):
        try:
            result = retrain_many(cli.configs, max_concurrent=cli.max_concurrent,
                                  concurrency_limit=cli.concurrency_limit, **scale)
        except RetrainFailures as failures:
            print(text_table(failures.rows))
            print(f"setfit-pipeline: error: {failures}", file=sys.stderr)
            return 1
    print(text_table(result["runs"]))
    return 0


def _sweep(cli: argparse.Namespace) -> int:
    from setfit_pipeline.flows.cli import _flow_run

    if (cli.head_grid is None) == (cli.search_space is None):
        raise ValueError("pass --head-grid or --search-space, exactly one of them")
    params = {"train_data": cli.train_data, "eval_data": cli.eval_data, "artifacts_root": cli.artifacts_root,
              "metric": cli.metric, "args": cli.args, "head_params": cli.head_params, "head_grid": cli.head_grid,
              "search_space": cli.search_space, "n_trials": cli.n_trials, "args_grid": cli.args_grid,
              "trials_at_once": cli.trials_at_once, "promote_to": None if cli.no_promote else cli.promote_to}
    if cli.model:
        params["model"] = cli.model
    prefect_ops.apply_run_defaults()
    from setfit_pipeline.flows.sweep import sweep_pipeline

    from setfit_core.pipeline.report import text_table

    with _flow_run(cli):
        result = sweep_pipeline(**params)
    if cli.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [{"head_params": json.dumps(t["head_params"]), "args": json.dumps(t["args"]),
             cli.metric: t["metrics"]["eval"][cli.metric] if "metrics" in t else None, "error": t.get("error")}
            for t in result["trials"]]
    print(text_table(rows))
    print(f"\nbest: {json.dumps(result['best']['head_params'])}\nmodel: {result['model_uri']}")
    if result["promotion"]["alias"] is not None:
        print(f"alias {result['promotion']['alias']}: {result['promotion']['reason']}")
    return 0


def _json(kind: type):
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"must be JSON; got {text!r} ({exc.msg})") from exc
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"must be a JSON {'object' if kind is dict else 'list'}; got {text!r}")
        return value

    return parse


def _data_updated(cli: argparse.Namespace) -> int:
    url = prefect_ops.require_api_url("data-updated")
    if cli.no_eval == (cli.eval_uri is not None):
        raise ValueError("pass --eval-uri (the promotion gate compares models on it) or --no-eval (the run trains "
                         "but cannot promote), not both or neither")
    from setfit_pipeline.flows.events import emit_data_updated

    event = emit_data_updated(cli.dataset, cli.uri, cli.eval_uri)
    print(f"emitted {event.event} for {event.resource.id} ({event.id}) to {url}")
    return 0

"""`setfit-pipeline retrain-many` and `setfit-pipeline data-updated`.

    setfit-pipeline retrain-many runs.yaml --max-concurrent 2
    setfit-pipeline data-updated --dataset acme --uri s3://bucket/acme/train.parquet \
        --eval-uri s3://bucket/acme/test.parquet
"""

from __future__ import annotations

import argparse
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


def _data_updated(cli: argparse.Namespace) -> int:
    url = prefect_ops.require_api_url("data-updated")
    if cli.no_eval == (cli.eval_uri is not None):
        raise ValueError("pass --eval-uri (the promotion gate compares models on it) or --no-eval (the run trains "
                         "but cannot promote), not both or neither")
    from setfit_pipeline.flows.events import emit_data_updated

    event = emit_data_updated(cli.dataset, cli.uri, cli.eval_uri)
    print(f"emitted {event.event} for {event.resource.id} ({event.id}) to {url}")
    return 0

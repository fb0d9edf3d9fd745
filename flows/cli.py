"""`setfit-pipeline`: train, predict, run a local Prefect server, deploy, start a worker, manage artifacts.

    setfit-pipeline train --train-data train.parquet --eval-data test.parquet --artifacts-root artifacts
    setfit-pipeline server                 # Prefect API + UI on http://127.0.0.1:4200
    setfit-pipeline deploy                 # work pool + every deployment in deployments/prefect.yaml
    setfit-pipeline worker                 # runs the deployments' flow runs on this machine
    setfit-pipeline artifacts ls artifacts
    setfit-pipeline models ls artifacts    # aliases: production -> the model batch prediction uses
    setfit-pipeline retrain-many runs.yaml # one training run per config, concurrently
    setfit-pipeline data-updated --dataset acme --uri train.parquet --eval-uri test.parquet  # retrain now

Expected failures (bad flags or config values, missing or unreadable files, S3 credentials or endpoints,
bad data) print one line, `setfit-pipeline: error: <what, which value, the fix>`, and exit with status 2;
most before any training starts. The traceback goes to the Prefect run's logs, and to the terminal with
`--verbose`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from setfit_pipeline.flows import prefect_ops

# Failures a user can fix: bad values (ValueError), files, permissions, S3 settings, an unreachable endpoint,
# a timeout (OSError and its subclasses). Anything else is a bug: its traceback is printed as Python does.
USER_ERRORS = (ValueError, OSError)
TRAIN_FLAGS = ("train_data", "artifacts_root", "eval_data", "test_data", "model", "metric")
SCALE_FLAGS = ("task_runner", "dask_address", "dask_workers", "shards")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    cli = parser.parse_args(argv)
    if not getattr(cli, "func", None):
        parser.print_help()
        return 0
    verbose = bool(getattr(cli, "verbose", False))
    try:
        code = cli.func(cli)
        sys.stdout.flush()  # here, not at exit: a closed pipe must raise where it is handled below
        return code
    except BrokenPipeError:
        # The reader went away (`setfit-pipeline artifacts ls ROOT | head`): stop quietly, as Unix tools do on
        # SIGPIPE. Output still buffered would fail again when Python flushes at exit, so stdout goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - expected failures get one line; the rest is re-raised below
        error = _user_error(exc)
        if error is None:
            raise
        if verbose:
            traceback.print_exc()
        print(f"setfit-pipeline: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _user_error(exc: BaseException) -> str | None:
    """The one line for an expected failure (see USER_ERRORS), or None for a bug."""
    from setfit_core.artifacts.s3 import explain

    if not isinstance(exc, USER_ERRORS):
        # botocore's own errors (no credentials, say) where no URI-aware code caught them first
        better = explain(exc, "reach S3", "s3://")
        if better is None:
            return None
        exc = better
    return " ".join(str(exc).split()) or type(exc).__name__


class _QuietRunErrors(logging.Filter):
    """Prefect reports a failed task or flow run on the console with its traceback, twice (task, then flow);
    the CLI prints one line instead. The run's logs in the Prefect API keep everything."""

    RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

    def __init__(self, handlers: list[logging.Handler]) -> None:
        super().__init__()
        self.handlers = handlers

    @classmethod
    @contextlib.contextmanager
    def around(cls, cli: argparse.Namespace) -> Iterator[None]:
        """Inside (a flow run started by the CLI), unless --verbose. Prefect is imported by then: its console
        handler sits on the root logger; its API handlers, on the run loggers, keep every record."""
        if getattr(cli, "verbose", False):
            yield
            return
        quiet = cls([h for h in logging.getLogger().handlers if type(h).__name__ == "PrefectConsoleHandler"])
        for handler in quiet.handlers:
            handler.addFilter(quiet)
        try:
            yield
        finally:
            for handler in quiet.handlers:
                handler.removeFilter(quiet)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.name.startswith(self.RUN_LOGGERS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="setfit-pipeline",
        description="SetFit few-shot text classification as a Prefect pipeline with staged artifacts.",
        epilog="Run `setfit-pipeline COMMAND --help` for a command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="on an error, print the traceback and Prefect's failure logs too")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_train(commands)
    _add_predict(commands)
    from setfit_pipeline.flows.cli_services import add_service_parsers

    add_service_parsers(commands)
    from setfit_pipeline.flows.cli_artifacts import add_artifacts_parser

    add_artifacts_parser(commands)
    from setfit_pipeline.flows.cli_models import add_models_parser

    add_models_parser(commands)
    from setfit_pipeline.flows.cli_retrain import add_retrain_parsers

    add_retrain_parsers(commands, _add_scale_flags, _add_verbose)
    return parser


# -- train / predict ------------------------------------------------------------------------------


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="run the training flow once (reported to PREFECT_API_URL, or a temporary local API)",
        description="Run train_pipeline: pairs -> body -> embeddings -> head -> evaluation -> model. Stages "
        "already under the artifacts root with the same inputs are reused. Values come from --config, then flags.",
    )
    train.add_argument("--config", type=Path, help="YAML or JSON file of train_pipeline parameters "
                       "(train_data, artifacts_root, args, head_params, ...); flags override it")
    train.add_argument("--train-data", help="Parquet / CSV / JSONL with text and label columns (path or s3:// URI)")
    train.add_argument("--artifacts-root", help="directory or s3://bucket/prefix for the stages")
    train.add_argument("--eval-data", help="evaluation split (optional)")
    train.add_argument("--test-data", help="test split (optional)")
    train.add_argument("--model", help="sentence-transformers model (default: the bundled all-MiniLM-L6-v2)")
    train.add_argument("--metric", help="accuracy (default), f1, precision, recall or matthews_correlation")
    train.add_argument("--args", type=_json_object("--args"), help='TrainingArguments fields as JSON, '
                       'e.g. \'{"num_iterations": 20, "seed": 0}\'')
    train.add_argument("--head-params", type=_json_object("--head-params"), help='head parameters as JSON, '
                       'e.g. \'{"C": 0.5}\'')
    train.add_argument("--differentiable-head", action="store_true", default=None,
                       help="train SetFitHead (torch) instead of LogisticRegression")
    train.add_argument("--strict", action="store_true", default=None,
                       help="stop before stage 1 (exit 2) on any data-quality warning: blank texts, classes with "
                       "one example, repeated columns, ...; without it they are printed and training runs")
    train.add_argument("--self-contained", action="store_true", default=None,
                       help="copy the body's files into the model directory, so it loads on its own anywhere "
                       "(default: the model references the body stage, which models sharing a body store once)")
    train.add_argument("--export-onnx", action="store_true", default=None,
                       help="also export the model's body as an ONNX graph (needs the onnx extra), for "
                       "`predict --engine onnx`")
    train.add_argument("--onnx-quantize", choices=("int8",), default=None,
                       help="with --export-onnx: int8 weights (faster on CPU; ≥ 99%% of predictions as fp32 on sst2)")
    gate = train.add_argument_group("promotion", "after evaluation, move an alias to the new model if it scores at "
                                    "least as well as the alias's model on the same eval data")
    gate.add_argument("--promote-to", metavar="ALIAS", help="the alias (default: production)")
    gate.add_argument("--no-promote", action="store_true", default=None, help="no promotion gate")
    gate.add_argument("--min-improvement", type=float, help="how much higher the metric must be (default: 0.0)")
    gate.add_argument("--allow-label-change", action="store_true", default=None,
                      help="promote even when the label set changed (the reason names the labels)")
    _add_scale_flags(train, "the embeddings stage")
    train.add_argument("--json", action="store_true", help="print the flow's result as JSON")
    _add_verbose(train)
    train.set_defaults(func=_train)


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the command it sets the flag; not given, the top-level value stands.
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="on an error, print the traceback and Prefect's failure logs too")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars (they are drawn only when stderr is a terminal anyway)")


@contextlib.contextmanager
def _flow_run(cli: argparse.Namespace) -> Iterator[None]:
    """Around a flow run the CLI starts: the configured Prefect API, or a temporary one that dies with this process;
    progress bars on a terminal; one-line errors unless --verbose."""
    from setfit_pipeline.tasks.common import TERMINAL_BARS

    token = TERMINAL_BARS.set(sys.stderr.isatty() and not getattr(cli, "quiet", False))
    try:
        with prefect_ops.temporary_api(), _QuietRunErrors.around(cli):
            yield
    finally:
        TERMINAL_BARS.reset(token)


def _add_scale_flags(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("scaling out", f"shard {what} over a Dask cluster (prefect-dask)")
    group.add_argument("--task-runner", choices=("default", "dask"),
                       help="'dask' shards the work (default: in this process)")
    group.add_argument("--dask-address",
                       help="an existing scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)")
    group.add_argument("--dask-workers", type=int, help="workers of the local cluster (default: one per core)")
    group.add_argument("--shards", type=int, help="number of shards (default: one per worker)")


def train_parameters(cli: argparse.Namespace) -> dict[str, Any]:
    """train_pipeline's parameters from --config and the flags, validated before any Prefect start."""
    from setfit_core.pipeline import PipelineJob

    params = _read_config(cli.config) if cli.config else {}
    flags = {name: getattr(cli, name) for name in (*TRAIN_FLAGS, *SCALE_FLAGS, "args", "head_params")}
    params.update({name: value for name, value in flags.items() if value is not None})
    if cli.differentiable_head:
        params["use_differentiable_head"] = True
    if cli.strict:
        params["strict"] = True
    if cli.self_contained:
        params["self_contained"] = True
    if cli.export_onnx:
        params["export_onnx"] = True
    if cli.onnx_quantize is not None:
        params["onnx_quantize"] = cli.onnx_quantize
    for name in ("promote_to", "min_improvement", "allow_label_change"):
        if getattr(cli, name) is not None:
            params[name] = getattr(cli, name)
    if cli.no_promote:
        if cli.promote_to is not None:
            raise ValueError("--no-promote and --promote-to contradict each other; pass one of them")
        params["promote_to"] = None
    for name in ("train_data", "artifacts_root"):
        if not params.get(name):
            raise ValueError(f"--{name.replace('_', '-')} is required (or `{name}:` in --config)")
    job_fields = {k: v for k, v in params.items() if k in PipelineJob.__dataclass_fields__}
    PipelineJob.from_dict(job_fields).validate()
    if params.get("promote_to", "production") is not None:
        from setfit_core.pipeline.promotion import PromotionGate

        PromotionGate(params.get("promote_to", "production"), params.get("min_improvement", 0.0),
                      params.get("allow_label_change", False)).validate()
    _scale_out(params)
    return params


def _scale_out(params: dict[str, Any]) -> dict[str, Any]:
    """The Dask options among `params`, checked now (the flow checks them too, but only after Prefect starts)."""
    from setfit_pipeline.tasks.dask_runner import ScaleOut

    scale = {name: params[name] for name in SCALE_FLAGS if params.get(name) is not None}
    ScaleOut(**scale).validate()
    return scale


def _train(cli: argparse.Namespace) -> int:
    params = train_parameters(cli)
    prefect_ops.apply_run_defaults()
    from setfit_pipeline.flows.train import train_pipeline

    from setfit_core.pipeline.report import metric_rows, stage_rows, text_table

    with _flow_run(cli):  # with --strict, a finding is a ValueError: main() prints it, exit 2
        result = train_pipeline(**params)
    for warning in result["warnings"]:  # on stderr: --json output on stdout stays parseable
        print(f"setfit-pipeline: warning: {warning['message']}", file=sys.stderr)
    if cli.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"phase 1: {result['phase1']}\n")
    print(text_table(stage_rows(result["stages"])))
    if result["metrics"]:
        print("\n" + text_table(metric_rows(result["metrics"])))
    print(f"\nmodel: {result['model_uri']}")
    promotion = result["promotion"]
    if promotion["alias"] is not None:  # every reason says whether it promoted
        print(f"alias {promotion['alias']}: {promotion['reason']}")
    return 0


def _add_predict(commands: Any) -> None:
    predict = commands.add_parser(
        "predict", help="predict a file of texts with a trained model, into Parquet",
        description="Run predict_flow: read texts (Parquet / CSV / JSONL, local or s3://), write text, "
        "predicted_label, predicted_id and probabilities to OUTPUT (Parquet).",
    )
    predict.add_argument("model", help="a model directory, e.g. the model: URI a training run printed, or an alias "
                         "record, <artifacts_root>/aliases/production.json: the model the alias points to now")
    predict.add_argument("input", help="texts to predict")
    predict.add_argument("output", help="Parquet file to write (local path or s3:// URI)")
    predict.add_argument("--text-column", default="text", help="column holding the texts (default: text)")
    predict.add_argument("--batch-size", type=int, default=None,
                         help="texts per encoding batch (default: 256 on a GPU, 64 on a CPU)")
    predict.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                         help="torch (default), or onnx: the model's ONNX export through onnxruntime (a model "
                         "trained with --export-onnx)")
    predict.add_argument("--inference-dtype", choices=("float32", "float16", "bfloat16", "auto"), default=None,
                         help="on a GPU, run the torch body in float16 or bfloat16 (faster; a few borderline "
                         "predictions may change); auto: bfloat16 on a GPU, float32 on a CPU (default: float32)")
    _add_scale_flags(predict, "the rows")
    _add_verbose(predict)
    predict.set_defaults(func=_predict)


def _predict(cli: argparse.Namespace) -> int:
    if cli.batch_size is not None and cli.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {cli.batch_size}")
    if "://" not in cli.input and not Path(cli.input).exists():
        raise FileNotFoundError(f"input {cli.input!r} does not exist; pass a Parquet / CSV / JSONL file of texts")
    from setfit_pipeline.flows.predict import predict_flow

    from setfit_core.artifacts.aliases import resolve_record_uri
    from setfit_core.pipeline.batch_predict import check_engine, resolve_model_uri

    check_engine(cli.engine)  # engine onnx without the onnx extra: one line, before Prefect starts

    # A body stage, a missing path, an unknown key prefix, an alias never set: fail now. An alias record is
    # handed to the flow as it is: the flow resolves it when its run starts and reports which model it used.
    alias = resolve_record_uri(cli.model)
    if alias is None:
        model = resolve_model_uri(cli.model)
    else:
        resolve_model_uri(alias.model_uri)  # the model it points to must exist too
        model = cli.model
    prefect_ops.apply_run_defaults()
    scale = _scale_out(vars(cli))
    with _flow_run(cli):
        result = predict_flow(model, cli.input, cli.output, text_column=cli.text_column, batch_size=cli.batch_size,
                              engine=cli.engine, inference_dtype=cli.inference_dtype, **scale)
    via = result["via_alias"]
    via = f" (alias {via['alias']}, version {via['version']})" if via else ""
    print(f"model: {result['model_uri']}{via}")
    print(f"predicted {result['rows']} rows in {result['seconds']:.2f} s ({cli.engine}) -> {result['output_data']}")
    return 0


# -- helpers --------------------------------------------------------------------------------------


def _json_object(flag: str):
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object; got {text!r} ({exc.msg})") from exc
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{flag} must be a JSON object like '{{\"seed\": 0}}'; got {text!r}")
        return value

    return parse


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"--config {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"--config {str(path)!r} is not valid YAML: {exc}") from exc
    elif path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--config {str(path)!r} is not valid JSON: {exc}") from exc
    else:
        raise ValueError(f"--config {str(path)!r} must end in .yaml, .yml or .json")
    if not isinstance(values, dict):
        raise ValueError(f"--config {str(path)!r} must hold a mapping of train_pipeline parameters")
    _check_config_keys(values, path)
    return values


def _check_config_keys(values: dict[str, Any], path: Path) -> None:
    import difflib
    import inspect

    from setfit_pipeline.flows.train import train_pipeline

    valid = list(inspect.signature(train_pipeline.fn).parameters)
    for name in values:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {valid}"
            raise ValueError(f"--config {str(path)!r}: unknown parameter {name!r}{hint}")


if __name__ == "__main__":
    raise SystemExit(main())

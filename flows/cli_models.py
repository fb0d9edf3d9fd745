"""`setfit-pipeline models ls | promote | rollback`: the aliases of an artifacts root and the models they name.

    setfit-pipeline models ls artifacts
    setfit-pipeline models promote artifacts/model/1a2b3c4d --alias production
    setfit-pipeline models rollback --alias production --artifacts-root artifacts

Thin: the decisions live in `setfit_core.pipeline.alias_ops`; this module parses arguments and prints. No
Prefect import, so these commands start fast and need no server. `promote` and `rollback` write the alias's
history like a training run's promotion does.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from setfit_pipeline.flows.cli_artifacts import ROOT_HELP, _table, format_time, open_store

from setfit_core.artifacts.listing import format_duration
from setfit_core.pipeline.alias_ops import list_aliases, promote_by_hand, rollback

ALIAS_HELP = "the alias, e.g. production (default: production)"


def add_models_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``models`` with ``ls``, ``promote`` and ``rollback`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "models", help="list aliases (production, ...), point one at a model, roll one back",
        description="Aliases name the model a team uses: <artifacts_root>/aliases/<alias>.json. A training run "
        "promotes to its alias when the new model scores at least as well; these commands do it by hand.",
    )
    commands = parser.add_subparsers(dest="models_command", metavar="{ls,promote,rollback}", required=True)
    ls = commands.add_parser("ls", help="aliases, their models, metrics and age",
                             description="Every alias under ROOT: version, model, its metric, how long ago it was "
                             "set, by what, and the model before it.")
    ls.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    ls.add_argument("--json", action="store_true", help="one alias record per line, as JSON")
    ls.set_defaults(func=run_ls)

    promote = commands.add_parser(
        "promote", help="point an alias at a model (no gate); written to the alias's history",
        description="Point ALIAS at MODEL_URI without comparing metrics. MODEL_URI is a model directory, e.g. "
        "<root>/model/<key> or a key prefix of 8+ characters as `artifacts ls` prints it.")
    promote.add_argument("model", metavar="MODEL_URI", help="the model: <root>/model/<key or prefix>, or a directory")
    promote.add_argument("--alias", default="production", help=ALIAS_HELP)
    promote.add_argument("--artifacts-root", help="where the alias lives (default: the model stage's root)")
    promote.set_defaults(func=run_promote)

    back = commands.add_parser(
        "rollback", help="point an alias back at the model it held before; written to its history",
        description="Point ALIAS at the model it held before its current model was promoted. Run it again to go "
        "one promotion further back.")
    back.add_argument("--alias", default="production", help=ALIAS_HELP)
    back.add_argument("--artifacts-root", required=True, help=ROOT_HELP)
    back.set_defaults(func=run_rollback)


def run_ls(args: argparse.Namespace) -> int:
    rows = list_aliases(open_store(args.root).root)
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row.record), sort_keys=True))
        return 0
    if not rows:
        print(f"no aliases under {args.root}; a training run with eval_data creates 'production'")
        return 0
    header = ("ALIAS", "VERSION", "MODEL", "METRIC", "SET", "AGE", "BY", "BEFORE")
    print(_table([header, *(_row(row) for row in rows)]))
    return 0


def run_promote(args: argparse.Namespace) -> int:
    record, changed = promote_by_hand(args.model, args.alias, args.artifacts_root)
    if not changed:
        print(f"alias {args.alias!r} already points to {record.model_uri} (version {record.version}); nothing written")
        return 0
    print(f"alias {args.alias!r} -> {record.model_uri} (version {record.version}; before: "
          f"{record.previous_model_uri or 'none'})")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    open_store(args.artifacts_root)
    record = rollback(args.alias, args.artifacts_root)
    print(f"alias {args.alias!r} -> {record.model_uri} (version {record.version}; rolled back from "
          f"{record.previous_model_uri})")
    return 0


def _row(row) -> tuple[str, ...]:
    record = row.record
    age = format_duration_approx(row.age_s)
    by = record.action + (f" {record.flow_run_id[:8]}" if record.flow_run_id else "")
    return (record.alias, str(record.version), _short(record.model_uri), row.metric, format_time(record.time), age,
            by, _short(record.previous_model_uri) if record.previous_model_uri else "-")


def _short(uri: str) -> str:
    """``<root>/model/<key12>``: the full key is in --json."""
    head, sep, key = uri.rstrip("/").rpartition("/model/")
    return f"{head}/model/{key[:12]}" if sep and len(key) == 64 else uri


def format_duration_approx(seconds: float | None) -> str:
    """The largest whole unit of an age, e.g. ``3d``, ``5h``, ``12m``, ``40s``."""
    if seconds is None:
        return "?"
    from datetime import timedelta

    whole = int(max(0.0, seconds))
    for size in (86400, 3600, 60):
        if whole >= size:
            return format_duration(timedelta(seconds=whole - whole % size))
    return format_duration(timedelta(seconds=whole)) if whole else "0s"

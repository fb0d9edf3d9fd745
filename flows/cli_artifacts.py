"""`setfit-pipeline artifacts ls | show | gc`: look at and clean up an artifacts root.

    setfit-pipeline artifacts ls artifacts --stage model
    setfit-pipeline artifacts show artifacts model 1a2b3c4d
    setfit-pipeline artifacts gc artifacts --keep-last 3 --older-than 7d         # dry run
    setfit-pipeline artifacts gc artifacts --keep-last 3 --older-than 7d --yes   # deletes

Thin: every decision lives in `setfit_core.artifacts.gc`; this module parses arguments and
prints. No Prefect import, so these commands start fast and work without a Prefect server.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.gc import GcPolicy, GcResult, GcSelection, Lineage, apply_gc, select_gc
from setfit_core.artifacts.listing import (
    StageDetails,
    StageInfo,
    format_duration,
    list_artifacts,
    parse_duration,
    show_stage,
)

PROG = "setfit-pipeline"
ROOT_HELP = "artifacts root: a local directory or s3://bucket/prefix (S3 credentials from the AWS_* environment)"
GC_DESCRIPTION = """\
Delete stages that no kept model and no newer manifest references. Kept: the --keep-last newest
model stages of each lineage (a training setup: training data location, TrainingArguments, head
settings, base model; models published without a lineage form one group), the models given with
--keep, their evaluations and every stage they were built from. Also kept: stages created within
--older-than (a running pipeline may be building on them) and every stage those reference.
Everything else is deleted, children before parents, together with temp dirs that crashed writers
left behind. The plan says why each stage stays or goes. Dry run unless --yes.
"""


def add_artifacts_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``artifacts`` with ``ls``, ``show`` and ``gc`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "artifacts",
        help="list, inspect and clean up stored stages",
        description="List, inspect and garbage-collect the stages under an artifacts root.",
    )
    commands = parser.add_subparsers(dest="artifacts_command", metavar="{ls,show,gc}", required=True)
    _add_ls(commands)
    _add_show(commands)
    _add_gc(commands)


def _add_ls(commands: argparse._SubParsersAction) -> None:
    ls = commands.add_parser(
        "ls",
        help="list stages, oldest first",
        description="List stages oldest first: stage, key, size, created (UTC), parents.",
    )
    ls.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    ls.add_argument("--stage", help="only this stage (pairs, body, embeddings, head, evaluation, model)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line, with full keys and sizes in bytes")
    ls.set_defaults(func=run_ls)


def _add_show(commands: argparse._SubParsersAction) -> None:
    show = commands.add_parser(
        "show",
        help="print one stage's manifest and check its files",
        description="Print a stage's manifest and files and check every file's sha256 against it. "
        "Exits 1 when the stage does not verify (the pipeline would recompute it).",
    )
    show.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    show.add_argument("stage", metavar="STAGE", help="stage name, e.g. model")
    show.add_argument("key", metavar="KEY_OR_PREFIX", help="the stage key or a unique prefix of at least 8 characters")
    show.add_argument("--json", action="store_true", help="the manifest as JSON, plus uri, verified and problems")
    show.set_defaults(func=run_show)


def _add_gc(commands: argparse._SubParsersAction) -> None:
    gc = commands.add_parser(
        "gc",
        help="delete stages no kept model or newer run needs (dry run by default)",
        description=GC_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gc.add_argument("root", metavar="ROOT", help=ROOT_HELP)
    gc.add_argument(
        "--keep-last",
        type=int,
        default=3,
        metavar="N",
        help="keep the N newest model stages of each lineage and what they were built from (default: 3)",
    )
    gc.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY",
        help="also keep these model stages (full key or unique prefix of at least 8 characters)",
    )
    gc.add_argument(
        "--older-than",
        default="7d",
        metavar="AGE",
        help="only delete stages older than AGE: 7d, 12h, 30m, 45s, or 0 for any age (default: 7d)",
    )
    gc.add_argument("--yes", action="store_true", help="really delete; without it gc only prints the plan")
    gc.set_defaults(func=run_gc)


# -- handlers ---------------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    infos = list_artifacts(open_store(args.root), args.stage)
    if args.json:
        for info in infos:
            print(json.dumps(_info_dict(info), sort_keys=True))
        return 0
    if not infos:
        print(f"no stages under {args.root}" + (f" for stage {args.stage!r}" if args.stage else ""))
        return 0
    print(_table([("STAGE", "KEY", "SIZE", "CREATED", "PARENTS"), *map(_ls_row, infos)]))
    return 0


def run_show(args: argparse.Namespace) -> int:
    details = show_stage(open_store(args.root), args.stage, args.key)
    if args.json:
        data = {
            **details.manifest.to_dict(),
            "uri": details.uri,
            "verified": details.verified,
            "problems": list(details.problems),
        }
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(_show_text(details))
    return 0 if details.verified else 1


def run_gc(args: argparse.Namespace) -> int:
    # Checked here, not by GcPolicy, so the message names the option the user typed.
    if args.keep_last < 0:
        raise ValueError(f"--keep-last must be an integer >= 0; got {args.keep_last}")
    policy = GcPolicy(args.keep_last, tuple(args.keep), parse_duration(args.older_than, "--older-than"))
    store = open_store(args.root)
    selection = select_gc(store, policy)
    print(_selection_text(selection, args.older_than))
    if not args.yes:
        print("\nDry run: nothing was deleted. Rerun with --yes to delete.")
        return 0
    print("\n" + _result_text(apply_gc(store, selection)))
    return 0


def open_store(root: str) -> ArtifactStore:
    """The store at ``root``; a missing local directory is a typo, not an empty store."""
    store = ArtifactStore(root)
    if store.is_local and not Path(store.root).is_dir():
        raise FileNotFoundError(
            f"artifacts root {root!r} does not exist; pass the artifacts_root your training runs wrote to"
        )
    return store


# -- formatting -------------------------------------------------------------------


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_time(created_at: str) -> str:
    """ISO UTC as ``2026-11-28 12:59:18``; an unreadable value as it is."""
    try:
        return datetime.fromisoformat(created_at).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return created_at


def _info_dict(info: StageInfo) -> dict:
    return {
        "stage": info.stage,
        "key": info.key,
        "size": info.size,
        "created_at": info.created_at,
        "parents": info.parents,
        "files": info.n_files,
    }


def _ls_row(info: StageInfo) -> tuple[str, ...]:
    parents = " ".join(f"{stage}:{key[:8]}" for stage, key in sorted(info.parents.items())) or "-"
    return (info.stage, info.key[:12], format_size(info.size), format_time(info.created_at), parents)


def _table(rows: list[tuple[str, ...]], indent: str = "") -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    cells = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join((indent + line).rstrip() for line in cells)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _show_text(details: StageDetails) -> str:
    m = details.manifest
    lines = [
        f"stage:    {m.stage}",
        f"key:      {m.key}",
        f"uri:      {details.uri}",
        f"created:  {format_time(m.created_at)} UTC",
    ]
    lines += [f"parent:   {stage} {key}" for stage, key in sorted(m.parents.items())]
    for name in ("config", "inputs", "metrics", "timings", "versions"):
        if value := getattr(m, name):
            lines.append(f"{name + ':':<9} {json.dumps(value, sort_keys=True, ensure_ascii=False)}")
    lines.append(f"files:    {len(m.files)}, {format_size(details.info.size)}")
    lines += [f"  {format_size(f.size):>10}  {f.sha256[:12]}  {f.path}" for f in m.files]
    if details.verified:
        lines.append("verified: yes (every file matches its size and sha256)")
    else:
        lines.append("verified: NO (the pipeline treats this stage as absent and recomputes it)")
        lines += [f"  {problem}" for problem in details.problems]
    return "\n".join(lines)


def _selection_text(selection: GcSelection, older_than: str) -> str:
    policy = selection.policy
    extra = f" plus {_plural(len(policy.keep), 'model')} given with --keep" if policy.keep else ""
    age = (
        f"stages newer than {older_than} (created after {selection.cutoff:%Y-%m-%d %H:%M:%S} UTC)"
        if policy.older_than
        else "no stage for its age (--older-than 0)"
    )
    models = _plural(policy.keep_last, "model")
    lines = [f"Keeping the newest {models} of each lineage{extra}, what they were built from, and {age}."]
    if selection.lineages:
        lines.append("\nLineages, by newest model:")
        lines.append(_table([_lineage_row(lineage, policy.keep_last) for lineage in selection.lineages], indent="  "))
    if selection.candidates:
        size = format_size(selection.bytes_freed)
        lines.append(f"\nWould delete {_plural(len(selection.candidates), 'stage')}, {size}:")
        rows = [(i.stage, i.key[:12], format_size(i.size), format_time(i.created_at), selection.reason_to_delete(i))
                for i in selection.candidates]
        lines.append(_table(rows, indent="  "))
    else:
        lines.append("\nNothing to delete.")
    if selection.kept:
        lines.append(f"\nKeeping {_plural(len(selection.kept), 'stage')}:")
        lines.append(
            _table(
                [(k.info.stage, k.info.key[:12], format_size(k.info.size), k.reason) for k in selection.kept],
                indent="  ",
            )
        )
    temp_age = format_duration(selection.temp_older_than)
    lines.append(f"\nAlso removes temp dirs of crashed writers older than {temp_age}.")
    return "\n".join(lines)


def _lineage_row(lineage: Lineage, keep_last: int) -> tuple[str, ...]:
    if lineage.id is None:
        name = ("unknown", "models published before lineages were recorded")
    else:
        name = (lineage.id[:12], lineage.label)
    return (*name, f"{_plural(len(lineage.models), 'model')}, {lineage.kept} kept by --keep-last {keep_last}")


def _result_text(result: GcResult) -> str:
    lines = [f"Deleted {_plural(len(result.deleted), 'stage')}, freed {format_size(result.bytes_freed)}."]
    if result.skipped:
        lines.append(
            f"Kept {_plural(len(result.skipped), 'selected stage')}: a stage published since references them:"
        )
        lines += [f"  {i.stage} {i.key[:12]}" for i in result.skipped]
    lines.append(f"Removed {_plural(len(result.temp_removed), 'stale temp dir')}.")
    return "\n".join(lines)


# -- standalone entry point (the lead wires `add_artifacts_parser` into flows/cli.py) ------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Inspect and clean up an artifacts root.")
    add_artifacts_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

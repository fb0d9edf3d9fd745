"""`setfit-pipeline artifacts ls | show | gc` on synthetic stages (no Prefect needed, so not under tests/flows).

The gc rule itself is tested on real pipeline runs in tests/artifacts/test_gc.py; here: output and exit codes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from setfit_pipeline.flows.cli_artifacts import format_size, main

from setfit_core.artifacts import ArtifactStore
from tests.artifacts.test_gc import fake_run
from tests.conftest import tree_snapshot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_runs(tmp_path, cache_home) -> tuple[str, dict[str, str], dict[str, str]]:
    """An artifacts root holding two runs that share pairs, body and embeddings (12 - 3 = 9 stages)."""
    root = str(tmp_path / "artifacts")
    store = ArtifactStore(root)
    return root, fake_run(store, c=1.0), fake_run(store, c=0.5)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["artifacts", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_lists_every_stage_in_pipeline_order(two_runs, capsys):
    root, first, second = two_runs
    code, out, _ = cli(capsys, "ls", root)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["STAGE", "KEY", "SIZE", "CREATED", "PARENTS"]
    assert [line.split()[0] for line in lines[1:]] == [
        "pairs",
        "body",
        "embeddings",
        "head",
        "evaluation",
        "model",
        "head",
        "evaluation",
        "model",
    ]
    model_line = lines[6]
    assert first["model"][:12] in model_line and "1.1 KiB" in model_line
    assert f"body:{first['body'][:8]}" in model_line and f"head:{first['head'][:8]}" in model_line
    assert all(key[:12] in out for key in {*first.values(), *second.values()})


def test_ls_filters_by_stage_and_writes_json_lines(two_runs, capsys):
    root, first, second = two_runs
    code, out, _ = cli(capsys, "ls", root, "--stage", "model", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["key"] for r in rows] == [first["model"], second["model"]]
    assert rows[0] == {
        "stage": "model",
        "key": first["model"],
        "size": 1100,
        "created_at": rows[0]["created_at"],
        "parents": {"head": first["head"], "body": first["body"]},
        "files": 1,
    }


def test_show_resolves_a_prefix_and_reports_verification(two_runs, capsys):
    root, first, _ = two_runs
    code, out, _ = cli(capsys, "show", root, "body", first["body"][:8])
    assert code == 0
    assert f"key:      {first['body']}" in out and f"parent:   pairs {first['pairs']}" in out
    assert "data.bin" in out and "verified: yes" in out
    (Path(root) / "body" / first["body"] / "data.bin").write_bytes(b"tampered")
    code, out, _ = cli(capsys, "show", root, "body", first["body"][:8], "--json")
    data = json.loads(out)
    assert code == 1 and data["key"] == first["body"] and data["verified"] is False
    assert data["problems"] == ["data.bin: size 8 != recorded 1000"]


def test_gc_dry_run_prints_the_plan_and_deletes_nothing(two_runs, capsys):
    root, first, second = two_runs
    before = tree_snapshot(Path(root))
    code, out, _ = cli(capsys, "gc", root, "--keep-last", "1", "--older-than", "0")
    assert code == 0 and tree_snapshot(Path(root)) == before
    assert "Would delete 3 stages, 1.3 KiB:" in out and "Dry run: nothing was deleted" in out
    assert "unknown  models published before lineages were recorded  2 models, 1 kept by --keep-last 1" in out
    assert f"model       {second['model'][:12]}" in out and "kept model: newest of unknown lineage" in out
    assert "2nd newest model of unknown lineage (--keep-last 1)" in out
    assert f"ancestor of kept model {second['model'][:8]}" in out
    assert f"evaluation of kept model {second['model'][:8]}" in out
    code, out, _ = cli(capsys, "gc", root, "--keep-last", "0")  # the default 7d: everything is fresh
    assert code == 0 and "Nothing to delete." in out and f"model       {first['model'][:12]}" in out
    assert "newer than 7d" in out and tree_snapshot(Path(root)) == before


def test_gc_keeps_the_newest_of_each_lineage_and_says_why_each_stage_goes(tmp_path, cache_home, capsys):
    root = str(tmp_path / "artifacts")
    store = ArtifactStore(root)
    old = fake_run(store, seed=0, lineage="a1b2c3d4e5f6")  # last night's model
    new = fake_run(store, seed=1, lineage="a1b2c3d4e5f6")  # tonight's: new data, same lineage
    head_only = fake_run(store, seed=1, c=0.5, lineage="0f9e8d7c6b5a")  # newer still, another lineage
    code, out, _ = cli(capsys, "gc", root, "--keep-last", "1", "--older-than", "0")
    assert code == 0 and "Keeping the newest 1 model of each lineage" in out
    lineages = out.split("Lineages, by newest model:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in lineages] == [
        ["0f9e8d7c6b5a", "0f9e8d7c6b5a", "data", "1", "model,", "1", "kept", "by", "--keep-last", "1"],
        ["a1b2c3d4e5f6", "a1b2c3d4e5f6", "data", "2", "models,", "1", "kept", "by", "--keep-last", "1"],
    ]
    deleting = out.split("Would delete 6 stages, 2.4 KiB:\n")[1].split("\n\n")[0]
    rows = {line.split()[1]: line for line in deleting.splitlines()}
    assert set(rows) == {key[:12] for key in old.values()}
    assert rows[old["model"][:12]].endswith("2nd newest model of lineage a1b2c3d4e5f6 data [a1b2c3d4] (--keep-last 1)")
    for stage in ("pairs", "body", "embeddings", "head", "evaluation"):
        assert rows[old[stage][:12]].endswith(f"only used by deleted model {old['model'][:8]}"), stage
    for run in (new, head_only):
        assert f"model       {run['model'][:12]}" in out
    assert "kept model: newest of lineage 0f9e8d7c6b5a data [0f9e8d7c] (--keep-last 1)" in out


def test_gc_yes_deletes_the_candidates_only(two_runs, capsys):
    root, first, second = two_runs
    code, out, _ = cli(
        capsys, "gc", root, "--keep-last", "0", "--keep", first["model"][:8], "--older-than", "0", "--yes"
    )
    assert code == 0 and "Deleted 3 stages, freed 1.3 KiB." in out and "Dry run" not in out
    assert "kept model (--keep)" in out
    remaining = {(m.stage, m.key) for m in ArtifactStore(root).list_stages()}
    assert remaining == {(stage, key) for stage, key in first.items()}


def test_gc_on_s3(s3_root, cache_home, capsys):
    store = ArtifactStore(s3_root)
    fake_run(store, c=1.0)
    kept = fake_run(store, c=0.5)
    code, out, _ = cli(capsys, "gc", s3_root, "--keep-last", "1", "--older-than", "0", "--yes")
    assert code == 0 and "Deleted 3 stages" in out
    code, out, _ = cli(capsys, "ls", s3_root, "--json")
    assert {json.loads(line)["key"] for line in out.splitlines()} == set(kept.values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["gc", "{root}", "--older-than", "3x"],
            "--older-than must be a number followed by d, h, m or s (e.g. 7d, 12h, 30m) or 0 for no age limit; "
            "got '3x'",
        ),
        (["gc", "{root}", "--keep-last", "-1"], "--keep-last must be an integer >= 0; got -1"),
        (["gc", "{root}", "--keep", "deadbeef"], "no model stage has a key starting with 'deadbeef'"),
        (["show", "{root}", "model", "abc"], "a model key must be 8 to 64 hex characters"),
        (["show", "{root}", "Model", "deadbeef"], "stage name must match"),
        (["ls", "{root}/nope"], "artifacts root '{root}/nope' does not exist; pass the artifacts_root"),
    ],
)
def test_user_errors_exit_2_with_the_message(two_runs, capsys, argv, message):
    root = two_runs[0]
    code, out, err = cli(capsys, *[a.format(root=root) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("setfit-pipeline: error: ") and message.format(root=root) in err


def test_help_runs_as_a_module():
    for args in (["artifacts", "--help"], ["artifacts", "gc", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "setfit_pipeline.flows.cli_artifacts", *args], capture_output=True, text=True,
            cwd=ROOT, check=True
        ).stdout
        assert "usage: setfit-pipeline artifacts" in out
    assert "Dry run unless --yes" in out and "--older-than AGE" in out


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (3 * 1024**4, "3072.0 GiB")],
)
def test_format_size(size, text):
    assert format_size(size) == text

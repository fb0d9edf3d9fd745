"""Reliability and security: no unpickling without the trust switch, no remote code by default, no path
outside the artifacts root, no credentials in logs, manifests or artifacts (library level; the Prefect
flow on S3 is checked in tests/flows/test_flow_security.py)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import pickle
import re
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pytest

from setfit_core import SetFitModel
from setfit_core.artifacts import ArtifactStore, sha256_file
from setfit_core.model_io.body_loading import load_body
from setfit_core.model_io.sklearn_head import PICKLE_HEAD_FILE, UnsafeHeadError, load_pickle_head
from setfit_core.pipeline import PipelineJob, PipelineRun, predict_to_parquet
from tests.conftest import tree_snapshot

PROJECT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("setfit_core", "tasks", "flows")
TINY_ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}
KEY = "ab" * 32


@pytest.fixture(autouse=True)
def _isolated(cache_home, single_torch_thread):
    """Caches under tmp_path; torch on one thread (the pipeline tests train the tiny model)."""


# ---- nothing is unpickled unless the caller says so --------------------------------------------


class _WritesMarker:
    """Unpickling this creates a file: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def poisoned_model(tiny_model_dir, tmp_path) -> tuple[Path, Path]:
    """A copy of the tiny model with a `model_head.pkl` whose unpickling writes `marker`."""
    model_dir = tmp_path / "poisoned"
    shutil.copytree(tiny_model_dir, model_dir)
    marker = tmp_path / "pickle-ran"
    (model_dir / PICKLE_HEAD_FILE).write_bytes(pickle.dumps(_WritesMarker(marker)))
    return model_dir, marker


def test_a_pickled_head_is_refused_without_trust_pickle(poisoned_model):
    model_dir, marker = poisoned_model
    with pytest.raises(UnsafeHeadError, match=r"holds 'model_head.pkl'.*Unpickling can execute arbitrary code.*"
                                              r"Pass trust_pickle=True only if you trust the source"):
        SetFitModel.from_pretrained(str(model_dir), device="cpu")
    assert not marker.exists(), "the pickle must not have been loaded"
    # The pipeline's batch prediction loads models the same way: refused too.
    with pytest.raises(UnsafeHeadError, match=r"holds 'model_head.pkl'"):
        predict_to_parquet(str(model_dir), str(model_dir / "missing.parquet"), str(model_dir / "out.parquet"))
    assert not marker.exists()
    # Positive control: the pickle really runs code once the caller opts in.
    load_pickle_head(model_dir, trust_pickle=True).close()
    assert marker.exists()


def _is_unpickling(node: ast.Call) -> bool:
    if not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
    attr, keywords = node.func.attr, {k.arg: k.value for k in node.keywords}
    weights_only = keywords.get("weights_only")
    return (
        (owner in ("pickle", "joblib", "dill", "cloudpickle") and attr in ("load", "loads", "Unpickler"))
        or attr == "read_pickle"
        or (owner in ("np", "numpy") and attr == "load" and "allow_pickle" in keywords)
        or (owner == "torch" and attr == "load"
            and not (isinstance(weights_only, ast.Constant) and weights_only.value is True))
    )


def _unpickling_calls(path: Path) -> list[tuple[str, str, int]]:
    """(file, enclosing function, line) of every call that can unpickle: pickle/joblib/dill/cloudpickle
    load(s), pandas read_pickle, numpy load with allow_pickle, torch.load without weights_only=True."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Call) and _is_unpickling(node):
            found.append((path.relative_to(PROJECT).as_posix(), function, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


def test_the_only_unpickling_call_is_the_trusted_path():
    files = [p for d in CODE_DIRS for p in (PROJECT / d).rglob("*.py")]
    calls = [call for p in files for call in _unpickling_calls(p)]
    assert [(f, fn) for f, fn, _ in calls] == [(calls[0][0], "load_pickle_head")], calls
    assert calls[0][0].startswith("setfit_core/model_io/sklearn_head")
    # Aliased imports would hide a call from the scan above.
    aliased = re.compile(r"^\s*(import (dill|cloudpickle)|from (pickle|joblib|dill|cloudpickle|torch) import .*\bload)",
                         re.MULTILINE)
    assert [p for p in files if aliased.search(p.read_text(encoding="utf-8"))] == []


# ---- no remote code by default ---------------------------------------------------------------


def test_trust_remote_code_is_off_by_default(tiny_model_dir, monkeypatch):
    for function in (SetFitModel.from_pretrained, load_body):
        assert inspect.signature(function).parameters["trust_remote_code"].default is False
    seen = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)

    import sentence_transformers

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Recorder)
    load_body(tiny_model_dir, device="cpu")
    assert seen["trust_remote_code"] is False
    source = "\n".join(p.read_text(encoding="utf-8") for d in CODE_DIRS for p in (PROJECT / d).rglob("*.py"))
    assert "trust_remote_code=True" not in source
    assert "trust_remote_code" not in {f for f in PipelineJob.__dataclass_fields__}, "not a pipeline parameter"


# ---- nothing outside the artifacts root ------------------------------------------------------


_WATCH: list[tuple[str, str]] | None = None  # (event, path) while `watching_io()` is active


def _audit(event: str, args: tuple) -> None:
    if _WATCH is None or event not in ("open", "os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree",
                                       "os.listdir", "os.scandir", "os.replace"):
        return
    write = event != "open" and event not in ("os.listdir", "os.scandir")
    if event == "open":
        mode, flags = args[1], args[2]
        write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    for path in args[:2] if event in ("os.rename", "os.replace") else args[:1]:
        if isinstance(path, (str, bytes, os.PathLike)):
            _WATCH.append(("write" if write else "read", os.path.abspath(os.fsdecode(path))))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records while watching


@contextmanager
def watching_io() -> Iterator[list[tuple[str, str]]]:
    """Every path opened, listed, created, renamed or removed in this process while the block runs."""
    global _WATCH
    _WATCH = []
    try:
        yield _WATCH
    finally:
        _WATCH = None


def touches(events: list[tuple[str, str]], directory: Path, kind: str | None = None) -> list[str]:
    prefix = str(directory.resolve())
    return [path for k, path in events if (kind is None or k == kind)
            and (path == prefix or path.startswith(prefix + os.sep))]


@pytest.fixture
def job_for(tiny_model_dir, tiny_splits, tmp_path):
    def make(**changes) -> PipelineJob:
        return PipelineJob(**{"train_data": tiny_splits["train"], "artifacts_root": str(tmp_path / "artifacts"),
                              "model": tiny_model_dir, "args": TINY_ARGS, **changes})

    return make


def _edit_files(manifest: dict, outside: Path) -> None:
    manifest["files"][0].update(path="../../outside/secret.txt", size=outside.stat().st_size,
                                sha256=sha256_file(outside))


def _edit_absolute(manifest: dict, outside: Path) -> None:
    manifest["files"][0].update(path=str(outside), size=outside.stat().st_size, sha256=sha256_file(outside))


def _edit_stage(manifest: dict, outside: Path) -> None:
    manifest["stage"] = "../../outside"


def _edit_parents(manifest: dict, outside: Path) -> None:
    manifest["parents"] = {"../../outside": KEY}


@pytest.mark.parametrize("edit", [_edit_files, _edit_absolute, _edit_stage, _edit_parents],
                         ids=["relative-path", "absolute-path", "stage-name", "parent-name"])
def test_an_edited_manifest_cannot_reach_outside_the_root(edit, job_for, tmp_path, caplog):
    """A manifest edited to point outside the root (its sizes and hashes made to match the outside file)
    is rejected: the stage is recomputed and nothing outside the root is read or written."""
    outside = tmp_path / "outside" / "secret.txt"
    outside.parent.mkdir()
    outside.write_text("do not read me", encoding="utf-8")
    before = tree_snapshot(outside.parent)
    first = PipelineRun(job_for()).run_stage("pairs")
    manifest_path = Path(first.uri) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    edit(manifest, outside)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    with watching_io() as events, caplog.at_level("WARNING"):
        again = PipelineRun(job_for()).run_stage("pairs")
    assert again.status == "computed" and again.key == first.key
    assert "ignoring stage pairs/" in caplog.text
    assert touches(events, outside.parent) == [], "nothing outside the root was read or written"
    assert tree_snapshot(outside.parent) == before
    assert ArtifactStore(tmp_path / "artifacts").find("pairs", first.key) is not None, "a valid stage again"


@pytest.mark.parametrize(
    ("stage", "key", "match"),
    [
        ("../body", KEY, r"stage name must match"),
        ("body/../../x", KEY, r"stage name must match"),
        ("Body", KEY, r"stage name must match"),
        ("body", "../../" + KEY[6:], r"stage key must be 64 lowercase hex"),
        ("body", KEY.upper(), r"stage key must be 64 lowercase hex"),
        ("body", "/etc/passwd", r"stage key must be 64 lowercase hex"),
    ],
)
def test_stage_names_and_keys_are_validated(stage, key, match, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    for call in (store.stage_uri, store.find, store.local_path, store.delete_stage):
        with pytest.raises(ValueError, match=match):
            call(stage, key)
    with pytest.raises(ValueError, match=match):
        with store.write_stage(stage, key, parents={}, config={}, inputs={}, versions={}):
            pass
    assert not (tmp_path / "artifacts").exists()


def test_credentials_in_an_s3_root_are_refused_without_echoing_them():
    with pytest.raises(ValueError, match=r"S3 root must look like s3://bucket/prefix") as error:
        ArtifactStore("s3://AKIAEXAMPLE:sekrit-value@bucket/prefix")
    assert "sekrit-value" not in str(error.value)


def test_a_stage_outside_the_plan_is_refused(job_for):
    with pytest.raises(ValueError, match=r"stage '../pairs' is not part of this run; its stages are \['pairs'"):
        PipelineRun(job_for()).run_stage("../pairs")


def test_a_dataset_uri_with_dotdot_is_only_read(job_for, tiny_splits, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "artifacts").mkdir()  # so that <root>/.. resolves
    shutil.copy(tiny_splits["train"], data_dir / "train.parquet")
    shutil.copy(tiny_splits["eval"], data_dir / "eval.parquet")
    before = tree_snapshot(data_dir)
    via_dotdot = tmp_path / "artifacts" / ".." / "data"
    job = job_for(train_data=str(via_dotdot / "train.parquet"), eval_data=str(via_dotdot / "eval.parquet"))
    with watching_io() as events:
        results = PipelineRun(job).run_all()
    assert set(r.status for r in results.values()) == {"computed"}
    assert touches(events, data_dir, "read"), "the data was read"
    assert touches(events, data_dir, "write") == [], "and never written to"
    assert tree_snapshot(data_dir) == before
    assert all(Path(r.uri).is_relative_to(tmp_path / "artifacts") for r in results.values())


# ---- no credentials in logs, manifests or artifacts ------------------------------------------


def _files_containing(root: Path, secret: str) -> list[str]:
    return [p.as_posix() for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("via", ["environment", "storage_options"])
def test_credentials_never_reach_logs_manifests_or_artifacts(via, job_for, s3_root, tiny_splits, tmp_path,
                                                             cache_home, monkeypatch, caplog):
    secret = f"sk-{secrets.token_hex(20)}"  # the moto server accepts any secret
    options = None
    if via == "environment":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    else:
        options = {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": secret}
    data = {}
    for split in ("train", "eval"):  # the data comes from S3, so the secret is really used
        data[f"{split}_data"] = f"{s3_root}/data/{split}.parquet"
        with fsspec.open(data[f"{split}_data"], "wb") as f:
            f.write(Path(tiny_splits[split]).read_bytes())
    job = job_for(storage_options=options, **data)
    with caplog.at_level("DEBUG"):
        run = PipelineRun(job)
        results = run.run_all()
        # An error that echoes the job must not carry the secret either.
        with pytest.raises(FileNotFoundError) as missing:
            PipelineRun(job_for(storage_options=options, train_data=f"{s3_root}/data/nope.parquet")).run_all()
    assert results["model"].status == "computed"
    assert secret not in caplog.text and secret not in str(missing.value)
    assert secret not in repr(run.store) and secret not in json.dumps(run.summary())
    assert secret not in json.dumps([r.to_dict() for r in results.values()], default=str)
    assert _files_containing(tmp_path / "artifacts", secret) == [], "no stage file or manifest holds it"
    assert _files_containing(cache_home, secret) == []

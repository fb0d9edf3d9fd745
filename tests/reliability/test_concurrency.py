"""Two processes run the same pipeline against one local root at once: each stage is computed once (the
other process waits on its lease and reuses it), one copy of each stage is kept, nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.manifest import MANIFEST_NAME
from tests.reliability.conftest import assert_all_verify

# Two training processes at once: ~10 s.
pytestmark = pytest.mark.slow


def unexpected_paths(root: Path, store: ArtifactStore) -> list[str]:
    """Everything under `root` that is not a stage dir, a key dir, a manifest or a file a manifest lists."""
    expected = set()
    for manifest in store.list_stages():
        stage_dir = Path(manifest.stage) / manifest.key
        expected |= {manifest.stage, stage_dir.as_posix(), (stage_dir / MANIFEST_NAME).as_posix()}
        for entry in manifest.files:  # the file and every directory above it inside the stage dir
            path = stage_dir / entry.path
            expected |= {p.as_posix() for p in [path, *path.parents] if p.is_relative_to(stage_dir)}
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.relative_to(root).as_posix()
                  not in expected)


def test_two_processes_same_config_same_root(job_file, spawn, tmp_path):
    job, root = job_file(), tmp_path / "artifacts"
    first, second = spawn(job), spawn(job)  # started together: they race on every stage
    results = [first.result(), second.result()]

    keys = [{s: r["key"] for s, r in result["stages"].items()} for result in results]
    assert keys[0] == keys[1]
    for stage in keys[0]:
        statuses = sorted(result["stages"][stage]["status"] for result in results)
        assert statuses == ["computed", "reused"], f"{stage} was computed by both runs: {statuses}"
    assert results[0]["metrics"] == results[1]["metrics"] and "eval" in results[0]["metrics"]
    store = ArtifactStore(root)
    assert_all_verify(store, results[0]["stages"])
    assert [(m.stage, m.key) for m in store.list_stages()] == sorted((s, k) for s, k in keys[0].items()), (
        "exactly one published copy of each stage"
    )
    assert unexpected_paths(root, store) == [], "no temp, trash, probe or lease files are left under the root"

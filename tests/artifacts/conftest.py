"""Fixtures for the artifact store: a store per backend (the loopback S3 lives in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(tmp_path / "artifacts")
    s3_root = request.getfixturevalue("s3_root")
    # cache_dir under tmp_path: tests must never write to the user's ~/.cache.
    return ArtifactStore(s3_root, cache_dir=tmp_path / "cache")

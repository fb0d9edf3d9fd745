"""Fixtures for the artifact store: a loopback S3 (moto) and a store per backend."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from setfit_core.artifacts import ArtifactStore

BUCKET = "setfit-artifacts"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3 API on 127.0.0.1; yields its endpoint URL, found only via AWS_* env vars."""
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()  # moto 5.x: the port the OS bound for port=0
    except (AttributeError, AssertionError):
        server.stop()
        port = _free_port()  # older moto: pick a port ourselves
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        # One INFO line per request from moto's werkzeug would bury real failure output.
        mp.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        # Credentials from ~/.aws or a real token must not leak into tests.
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_root(s3_server: str) -> str:
    """A fresh prefix in the shared bucket, so tests never see each other's stages."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(tmp_path / "artifacts")
    s3_root = request.getfixturevalue("s3_root")
    # cache_dir under tmp_path: tests must never write to the user's ~/.cache.
    return ArtifactStore(s3_root, cache_dir=tmp_path / "cache")

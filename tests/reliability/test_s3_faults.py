"""S3 endpoint outages: retries with backoff, a clear error naming the stage, nothing half-published.

A `FlakyProxy` sits between the store and moto: stopping it is a dead endpoint (connection
refused) while moto keeps the bucket; starting it again is the endpoint coming back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import fsspec
import pytest

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.retry import StorageUnavailableError
from setfit_core.pipeline import PipelineJob, PipelineRun
from tests.reliability._proxy import FlakyProxy
from tests.reliability.conftest import assert_all_verify

# Distinct fake credentials (moto accepts any): the error text and the log must never show them.
CREDENTIALS = {"key": "AKIAFAULTINJECT0001", "secret": "fault/Secret+Value0001"}
ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}


@pytest.fixture
def proxy(s3_server: str) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(int(s3_server.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


def store_via(proxy: FlakyProxy, root: str, cache_dir) -> ArtifactStore:
    options = {"endpoint_url": proxy.endpoint, **CREDENTIALS}
    return ArtifactStore(root, storage_options=options, cache_dir=cache_dir, retry_base_delay_s=0.01)


def retry_warnings(caplog: pytest.LogCaptureFixture, what: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "setfit_core.artifacts.retry" and what in r.message]


def test_outage_mid_upload_fails_naming_the_stage_then_the_next_run_completes(
    proxy, s3_server, s3_root, tiny_model_dir, tiny_splits, tmp_path, caplog
):
    root = f"{s3_root}/artifacts"
    job = PipelineJob(train_data=tiny_splits["train"], eval_data=tiny_splits["eval"], artifacts_root=root,
                      model=tiny_model_dir, args=ARGS)
    run = PipelineRun(job, store=store_via(proxy, root, tmp_path / "cache"))
    body_key = run.plan["body"].key
    body_uri = f"{root}/body/{body_key}"
    # The 3rd file PUT of the body stage: two files are up, the manifest is not.
    proxy.trip_after(f"PUT /{body_uri.removeprefix('s3://')}/".encode(), 3)

    expected = rf"^could not upload stage {re.escape(body_uri)} after 4 attempts: EndpointConnectionError"
    with pytest.raises(StorageUnavailableError, match=expected) as failure:
        run.run_all()
    assert isinstance(failure.value, OSError)
    assert len(retry_warnings(caplog, f"upload stage {body_uri}")) == 3, "attempts 1-3 warned, the 4th raised"
    for secret in CREDENTIALS.values():
        assert secret not in str(failure.value) and secret not in caplog.text

    moto, _ = fsspec.core.url_to_fs(root, endpoint_url=s3_server, use_listings_cache=False)  # bypasses the proxy
    uploaded = moto.find(body_uri)
    assert len(uploaded) == 2 and not any(p.endswith("/manifest.json") for p in uploaded), uploaded

    proxy.start()  # the endpoint is back, on the same port
    store = store_via(proxy, root, tmp_path / "cache")
    assert store.find("body", body_key) is None, "the two uploaded files are not a stage"
    results = PipelineRun(job, store=store).run_all()
    assert {s: r.status for s, r in results.items()} == {
        "pairs": "reused", "body": "computed", "embeddings": "computed", "head": "computed",
        "evaluation": "computed", "model": "computed"}
    assert_all_verify(store, {s: {"key": r.key} for s, r in results.items()})
    listed = sorted(p.removeprefix(f"{body_uri.removeprefix('s3://')}/") for p in moto.find(body_uri))
    assert listed == sorted([f.path for f in results["body"].manifest.files] + ["manifest.json"])


def test_dead_endpoint_fails_within_seconds_naming_what_it_tried(proxy, s3_root, tmp_path, caplog):
    store = store_via(proxy, s3_root, tmp_path / "cache")
    key = "0" * 64
    assert store.find("pairs", key) is None  # reachable: simply absent
    proxy.stop()
    started = time.monotonic()
    manifest = re.escape(f"{s3_root}/pairs/{key}/manifest.json")
    expected = rf"^could not read {manifest} after 4 attempts: EndpointConnectionError: Could not connect"
    with pytest.raises(StorageUnavailableError, match=expected):
        store.find("pairs", key)
    # botocore's and s3fs's own retries are off: 4 refused connections and 0.07 s of backoff, not minutes.
    assert time.monotonic() - started < 10
    assert len(retry_warnings(caplog, "could not read")) == 3
    # Planning's writability probe: unreachable is not reported as "not writable".
    with pytest.raises(StorageUnavailableError, match=rf"^could not write to {re.escape(s3_root)} after 4 attempts"):
        store.check_writable()

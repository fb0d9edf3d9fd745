"""Prefect flow tests: one temporary Prefect API for the session, with its own result storage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(tmp_path_factory, single_torch_thread) -> Iterator[None]:
    """`prefect_test_harness` isolates the database but not result storage: point
    that at a temp dir too, or a later session could see this one's results."""
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: results}):
        with prefect_test_harness(server_startup_timeout=90):
            yield


@pytest.fixture(autouse=True)
def _isolated_cache(cache_home):
    """Pipeline caches (model identity, local copies of S3 stages) stay under tmp_path."""

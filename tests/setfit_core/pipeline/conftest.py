"""Fixtures for library-level pipeline tests (no Prefect): a job factory on the tiny model."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from setfit_core.pipeline import PipelineJob

TINY_ARGS = {"num_iterations": 2, "seed": 0, "num_epochs": [1, 2], "show_progress_bar": False}


@pytest.fixture(autouse=True)
def _isolated_cache(cache_home):
    """Every pipeline test keeps its caches under tmp_path."""


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread(single_torch_thread):
    """See `single_torch_thread`: the tiny model gains nothing from threads and loses a lot to contention."""


@pytest.fixture
def make_job(tiny_model_dir, tiny_splits, tmp_path) -> Callable[..., PipelineJob]:
    """`make_job(**changes)`: a job on the tiny model and tiny splits, artifacts under tmp_path."""

    def make(**changes) -> PipelineJob:
        base = {
            "train_data": tiny_splits["train"],
            "eval_data": tiny_splits["eval"],
            "artifacts_root": str(tmp_path / "artifacts"),
            "model": tiny_model_dir,
            "args": TINY_ARGS,
        }
        return PipelineJob(**{**base, **changes})

    return make

"""`StageResult` and the one rule every stage follows: reuse a verified stage, else compute it.

"Verified" is `ArtifactStore.find`: the manifest parses, its key matches its content, and every
file has its recorded sha256. Anything else (absent, half-written, flipped bytes) is recomputed.
The store publishes a stage only when the computation finished, manifest last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from setfit_core.artifacts import ArtifactStore, Manifest
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.pipeline.plan import StageSpec

logger = logging.getLogger(__name__)

# progress(done, total, message): called while a long stage runs (body training, embedding).
ProgressFn = Callable[[int, int, str], None]
Status = Literal["computed", "reused"]


@dataclass(frozen=True)
class StageResult:
    stage: str
    key: str
    status: Status
    seconds: float  # wall time of this call: finding (reused) or computing and publishing (computed)
    uri: str
    manifest: Manifest

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a Prefect task result or a report (the manifest's metrics included)."""
        return {
            "stage": self.stage,
            "key": self.key,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "uri": self.uri,
            "metrics": self.manifest.metrics,
        }


def find_or_compute(store: ArtifactStore, spec: StageSpec, compute: Callable[[StageWriter], None]) -> StageResult:
    """Reuse the verified stage `spec` names, or run `compute(writer)` and publish what it wrote.

    A stage another live run is computing is waited for and reused, not computed twice (`store.claim`)."""
    started = time.perf_counter()
    uri = store.stage_uri(spec.stage, spec.key)
    manifest = store.find(spec.stage, spec.key)
    if manifest is None:
        lease, manifest = store.claim(spec.stage, spec.key)
    if manifest is not None:
        seconds = time.perf_counter() - started
        logger.info("%s %s: reused (%.2f s) %s", spec.stage, spec.key[:12], seconds, uri)
        return StageResult(spec.stage, spec.key, "reused", seconds, uri, manifest)
    logger.info("%s %s: computing", spec.stage, spec.key[:12])
    try:
        with spec.write(store) as writer:
            compute(writer)
            writer.timings.setdefault("compute", time.perf_counter() - started)
    finally:
        lease.release()
    seconds = time.perf_counter() - started
    logger.info("%s %s: computed (%.2f s) %s", spec.stage, spec.key[:12], seconds, uri)
    return StageResult(spec.stage, spec.key, "computed", seconds, uri, writer.manifest)


def parent_dir(store: ArtifactStore, spec: StageSpec, parent: str) -> Path:
    """A local directory with the verified files of one of `spec`'s parents (downloaded for S3)."""
    return store.local_path(parent, spec.parents[parent])


def check_parents(spec: StageSpec, given: dict[str, str]) -> None:
    """Fail when a caller hands over parent stages other than the ones this stage's key names."""
    for stage, key in given.items():
        if spec.parents.get(stage) != key:
            raise RuntimeError(
                f"stage {spec.stage!r} expects parent {stage} {spec.parents.get(stage)!r} but was given {key!r}; "
                "the inputs changed between stages, rerun the pipeline"
            )

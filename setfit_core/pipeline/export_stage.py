"""Export stage (``model``): a directory `SetFitModel.from_pretrained` loads, keyed by its parents.

The body stage holds `SentenceTransformer.save` files and the head stage holds the head files and
``config_setfit.json``; together they are exactly what `SetFitModel.save_pretrained` writes, so
export copies files and never loads a model. (The end-to-end head stage already holds a whole
model, body included.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.manifest import MANIFEST_NAME
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import StageResult, find_or_compute, parent_dir


def run_export(store: ArtifactStore, spec: StageSpec) -> StageResult:
    def compute(writer: StageWriter) -> None:
        copied = 0
        for parent in ("body", "head"):
            if parent in spec.parents:
                copied += copy_stage_files(parent_dir(store, spec, parent), writer.dir)
        writer.metrics.update(bytes=copied)

    return find_or_compute(store, spec, compute)


def copy_stage_files(source: Path, target: Path) -> int:
    """Copy a stage's files (not its manifest) into `target`; returns the bytes copied."""
    copied = 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or rel.as_posix() == MANIFEST_NAME:
            continue
        destination = target / rel
        if destination.exists():  # body and head files never share a name; if they did, one would be lost
            raise FileExistsError(f"{rel.as_posix()!r} comes from two parent stages; cannot assemble the model")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        copied += destination.stat().st_size
    return copied

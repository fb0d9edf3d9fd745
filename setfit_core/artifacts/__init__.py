"""Staged, content-addressed artifacts: keys, manifests and a local/S3 store.

A stage writes ``<root>/<stage>/<key>/`` with ``manifest.json`` last; it counts as done
exactly when that manifest parses and every file it lists has the recorded sha256.
"""

from __future__ import annotations

from setfit_core.artifacts.gc import GcPolicy, GcSelection, apply_gc, select_gc
from setfit_core.artifacts.keys import (
    canonical_json,
    sha256_bytes,
    sha256_file,
    sha256_fileobj,
    stage_key,
    to_plain,
    validate_key,
    validate_stage_name,
)
from setfit_core.artifacts.listing import list_artifacts, show_stage
from setfit_core.artifacts.manifest import FileEntry, Manifest, validate_relpath
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.artifacts.store import ArtifactStore

__all__ = [
    "ArtifactStore",
    "FileEntry",
    "GcSelection",
    "GcPolicy",
    "Manifest",
    "StageWriter",
    "apply_gc",
    "canonical_json",
    "list_artifacts",
    "select_gc",
    "sha256_bytes",
    "sha256_file",
    "sha256_fileobj",
    "show_stage",
    "stage_key",
    "to_plain",
    "validate_key",
    "validate_relpath",
    "validate_stage_name",
]

"""ArtifactStore: one object that hides whether stages live on local disk or on S3.

Layout: ``<root>/<stage>/<key>/`` holds the stage's files and a ``manifest.json`` that is
written last. A stage is done exactly when its manifest parses and every listed file has
the recorded size and sha256; anything else is treated as absent so the caller recomputes.
Every path is built from a validated stage name and key plus a validated manifest path,
so no user-controlled value can reach outside the root.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import fsspec

from setfit_core.artifacts import stagedir
from setfit_core.artifacts.keys import (
    KEY_PATTERN,
    STAGE_NAME_PATTERN,
    sha256_bytes,
    stage_key,
    validate_key,
    validate_stage_name,
)
from setfit_core.artifacts.manifest import MANIFEST_NAME, Manifest, validate_relpath
from setfit_core.artifacts.stagedir import StageWriter

logger = logging.getLogger(__name__)


class ArtifactStore:
    """Content-addressed stage storage under a local directory or ``s3://bucket/prefix``.

    S3 credentials come from the usual AWS environment/config; ``storage_options`` go
    to s3fs unchanged (e.g. ``{"endpoint_url": ...}``; ``AWS_ENDPOINT_URL`` also works).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root, self._scheme = _normalize_root(root)
        options = dict(storage_options or {})
        if self._scheme == "s3":
            # s3fs caches instances keyed on these options only, so a cached client could
            # still point at an old AWS_ENDPOINT_URL or a closed event loop.
            options.setdefault("skip_instance_cache", True)
            # Other processes publish stages; a cached listing would hide them.
            options.setdefault("use_listings_cache", False)
        self._fs, base = fsspec.core.url_to_fs(self.root, **options)
        self._base = base.rstrip("/")
        self._cache_root = Path(cache_dir) if cache_dir else _default_cache_root(self.root)

    def __repr__(self) -> str:
        # Only the root: storage_options may hold credentials.
        return f"ArtifactStore(root={self.root!r})"

    @property
    def is_local(self) -> bool:
        return self._scheme == "file"

    def stage_uri(self, stage: str, key: str) -> str:
        """Absolute path (local root) or ``s3://`` URI of a stage directory."""
        path = self._stage_path(stage, key)
        return path if self.is_local else f"s3://{path}"

    # -- reading ------------------------------------------------------------------

    def find(self, stage: str, key: str) -> Manifest | None:
        """The verified manifest of a stage, or None if absent or not verifiable."""
        manifest = self._read_manifest(stage, key)
        if manifest is None:
            return None
        problems = self.verify(manifest)
        if problems:
            uri = self.stage_uri(stage, key)
            logger.warning("stage %s did not verify, treating it as absent: %s", uri, "; ".join(problems))
            return None
        return manifest

    def verify(self, manifest: Manifest) -> list[str]:
        """Problems with a stored stage (empty when every file matches its manifest)."""
        stage_dir = self._stage_path(manifest.stage, manifest.key)
        return stagedir.key_problems(manifest) + stagedir.check_files(self._fs, stage_dir, manifest.files)

    def local_path(self, stage: str, key: str) -> Path:
        """A local directory holding a verified stage's files (downloaded for S3)."""
        if self.is_local:
            if self.find(stage, key) is None:
                raise FileNotFoundError(f"no verified stage {stage}/{key} under {self.root}")
            return Path(self._stage_path(stage, key))
        manifest = self._read_manifest(stage, key)
        if manifest is None:
            raise FileNotFoundError(f"no valid manifest for {stage}/{key} under {self.root}")
        target = self._cache_path(stage, key)
        if stagedir.verified_local_copy(target, manifest) is None:
            tmp = stagedir.make_temp_dir(target.parent, key)
            try:
                self._download(manifest, tmp)
                stagedir.publish_dir(tmp, target, manifest, lambda: stagedir.verified_local_copy(target, manifest))
            finally:
                stagedir.remove_tree(tmp)
        return target

    def open_file(self, stage: str, key: str, relpath: str, mode: str = "rb") -> IO[Any]:
        """Stream one file of a stage (no verification: call ``find`` first)."""
        if mode not in ("rb", "r"):
            raise ValueError(f"mode must be 'rb' or 'r' (stages are read-only); got {mode!r}")
        return self._fs.open(f"{self._stage_path(stage, key)}/{validate_relpath(relpath)}", mode)

    def list_stages(self, stage: str | None = None) -> list[Manifest]:
        """Manifests that parse (files not verified), sorted by stage then key."""
        if stage is not None:
            stages = [validate_stage_name(stage)]
        else:  # temp/trash entries start with '.', so the name patterns skip them
            stages = [n for n in self._names(self._base) if STAGE_NAME_PATTERN.fullmatch(n)]
        found = []
        for name in sorted(stages):
            keys = [k for k in self._names(f"{self._base}/{name}") if KEY_PATTERN.fullmatch(k)]
            found += [m for k in sorted(keys) if (m := self._read_manifest(name, k)) is not None]
        return found

    # -- writing ------------------------------------------------------------------

    @contextmanager
    def write_stage(
        self,
        stage: str,
        key: str,
        *,
        parents: dict[str, str],
        config: dict[str, Any],
        inputs: dict[str, str],
        versions: dict[str, str],
        metrics: dict[str, Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> Iterator[StageWriter]:
        """Write a stage's files into ``writer.dir``; publish them when the block exits.

        On an exception nothing is published and the temporary directory is removed.
        If a verified copy already exists (a concurrent writer won) it is kept and
        returned as ``writer.manifest``.
        """
        expected = stage_key(stage, config, parents, inputs, versions)
        if validate_key(key) != expected:
            raise ValueError(
                f"key {key!r} for stage {stage!r} is not stage_key() of the given config, "
                f"parents, inputs and versions ({expected!r}); derive it with stage_key()"
            )
        # Local: temp dir beside the target so os.rename is atomic. S3: in the cache, so
        # the uploaded files become the local cached copy for free.
        staging = Path(self._base) / stage if self.is_local else self._cache_root / stage
        writer = StageWriter(stagedir.make_temp_dir(staging, key), dict(metrics or {}), dict(timings or {}))
        try:
            yield writer
            draft = Manifest(
                stage=stage,
                key=key,
                parents=parents,
                config=config,
                inputs=inputs,
                files=stagedir.hash_tree(writer.dir),
                metrics=writer.metrics,
                timings=writer.timings,
                versions=versions,
                created_at=datetime.now(timezone.utc).isoformat(),
            )
            # Round-trip so we never publish a manifest that find() would reject.
            manifest = Manifest.from_json(draft.to_json(), expected_stage=stage, expected_key=key)
            writer.manifest = self._publish(manifest, writer.dir)
        finally:
            stagedir.remove_tree(writer.dir)  # already gone after a successful local rename

    def check_writable(self) -> None:
        """Create and remove a probe file under the root, so an unwritable root fails before any work."""
        probe = f"{self._base}/.probe-{secrets.token_hex(6)}"
        try:
            if self.is_local:
                Path(self._base).mkdir(parents=True, exist_ok=True)
            self._fs.pipe_file(probe, b"")
            self._fs.rm_file(probe)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PermissionError(
                f"artifacts_root {self.root!r} is not writable ({reason}: {exc.filename or probe}); pick a "
                "directory (or s3://bucket/prefix) you can write to, or fix its permissions"
            ) from exc

    def delete_stage(self, stage: str, key: str) -> None:
        """Remove a stage: manifest first, so a half-deleted stage is never trusted."""
        path = self._stage_path(stage, key)
        if self._fs.exists(f"{path}/{MANIFEST_NAME}"):
            self._fs.rm_file(f"{path}/{MANIFEST_NAME}")
        if self.is_local:
            stagedir.remove_tree(Path(path))
            return
        if objects := self._fs.find(path):
            self._fs.rm(objects)
        stagedir.remove_tree(self._cache_path(stage, key))

    def cleanup_temp(self, older_than_s: float = 3600) -> list[Path]:
        """Remove temp/trash dirs left by crashed writers; returns what was removed.

        Age is the newest mtime inside the directory; choose ``older_than_s`` longer than
        any stage takes to write, or an in-progress write could be removed.
        """
        base = Path(self._base) if self.is_local else self._cache_root
        return stagedir.remove_stale_temp(base, older_than_s)

    # -- internals ----------------------------------------------------------------

    def _stage_path(self, stage: str, key: str) -> str:
        return f"{self._base}/{validate_stage_name(stage)}/{validate_key(key)}"

    def _cache_path(self, stage: str, key: str) -> Path:
        return self._cache_root / validate_stage_name(stage) / validate_key(key)

    def _names(self, path: str) -> list[str]:
        try:
            entries = self._fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def _read_manifest(self, stage: str, key: str) -> Manifest | None:
        """Parse a stage's manifest without checking files; warn if it is corrupt."""
        source = f"{self.stage_uri(stage, key)}/{MANIFEST_NAME}"
        try:
            text = self._fs.cat_file(f"{self._stage_path(stage, key)}/{MANIFEST_NAME}")
            return Manifest.from_json(text, expected_stage=stage, expected_key=key, source=source)
        except FileNotFoundError:
            return None
        except (ValueError, IsADirectoryError, NotADirectoryError) as exc:
            logger.warning("ignoring stage %s/%s: %s", stage, key, exc)
            return None

    def _publish(self, manifest: Manifest, local_dir: Path) -> Manifest:
        stage, key = manifest.stage, manifest.key
        if self.is_local:
            target = Path(self._stage_path(stage, key))
            found = stagedir.publish_dir(local_dir, target, manifest, lambda: self.find(stage, key))
        else:
            if (existing := self.find(stage, key)) is not None:
                return existing
            self._upload(manifest, local_dir)
            cached = self._cache_path(stage, key)  # what we uploaded is a verified local copy
            stagedir.publish_dir(local_dir, cached, manifest, lambda: stagedir.verified_local_copy(cached, manifest))
            found = manifest
        uri = self.stage_uri(stage, key)
        logger.info("stage %s/%s at %s: %d files", stage, key, uri, len(found.files))
        return found

    def _upload(self, manifest: Manifest, local_dir: Path) -> None:
        """Data files first, manifest last: an interrupted upload is never trusted."""
        prefix = self._stage_path(manifest.stage, manifest.key)
        manifest_path = f"{prefix}/{MANIFEST_NAME}"
        if self._fs.exists(manifest_path):  # an unverifiable one; un-publish it first
            self._fs.rm_file(manifest_path)
        wanted = {f"{prefix}/{entry.path}" for entry in manifest.files}
        if stale := [p for p in self._fs.find(prefix) if p not in wanted]:
            self._fs.rm(stale)  # left by an earlier partial upload
        for entry in manifest.files:
            self._fs.put_file(str(local_dir / entry.path), f"{prefix}/{entry.path}")
        self._fs.pipe_file(manifest_path, manifest.to_json().encode("utf-8"))

    def _download(self, manifest: Manifest, dest: Path) -> None:
        """Fetch a stage's files into ``dest``, then check them against the manifest."""
        prefix = self._stage_path(manifest.stage, manifest.key)
        for entry in manifest.files:
            (dest / entry.path).parent.mkdir(parents=True, exist_ok=True)
            self._fs.get_file(f"{prefix}/{entry.path}", str(dest / entry.path))
        problems = stagedir.key_problems(manifest)
        problems += stagedir.check_files(stagedir.LOCAL_FS, str(dest), manifest.files)
        if problems:
            uri = self.stage_uri(manifest.stage, manifest.key)
            logger.warning("stage %s did not verify on download: %s", uri, "; ".join(problems))
            raise FileNotFoundError(f"no verified stage at {uri}: {'; '.join(problems)}")
        (dest / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")


def _normalize_root(root: str | os.PathLike[str]) -> tuple[str, str]:
    text = os.fspath(root)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return os.path.abspath(text), "file"
    if scheme.lower() == "file":
        return os.path.abspath(rest), "file"
    if scheme.lower() == "s3":
        bucket = rest.split("/", 1)[0]
        if not bucket or "@" in bucket or ":" in bucket:
            # Do not echo the root: a user:secret@bucket form would leak credentials.
            raise ValueError("S3 root must look like s3://bucket/prefix, with credentials in the environment")
        return f"s3://{rest.strip('/')}", "s3"
    raise ValueError(
        f"unsupported artifact root scheme {scheme!r}; use a local path, file:///abs/path or s3://bucket/prefix"
    )


def _default_cache_root(root: str) -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "setfit_core" / "artifacts" / sha256_bytes(root.encode())[:16]

"""ArtifactStore: one object that hides whether stages live on local disk or on S3.

Layout: ``<root>/<stage>/<key>/`` holds the stage's files and a ``manifest.json`` that is
written last; ``<root>/<stage>/.lease-<key>/`` exists while a run computes that stage (`leases.py`).
A stage is done exactly when its manifest parses and every listed file has the recorded size and
sha256; anything else is treated as absent so the caller recomputes.
Every path is built from a validated stage name and key plus a validated manifest path,
so no user-controlled value can reach outside the root.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, TypeVar

import fsspec

from setfit_core.artifacts import s3, stagedir
from setfit_core.artifacts.keys import (
    KEY_PATTERN,
    STAGE_NAME_PATTERN,
    sha256_bytes,
    stage_key,
    validate_key,
    validate_stage_name,
)
from setfit_core.artifacts.leases import LEASE_DIR_PREFIX, Lease, LeaseFiles, LeasePolicy, acquire_or_wait
from setfit_core.artifacts.manifest import MANIFEST_NAME, Manifest, validate_relpath
from setfit_core.artifacts.retry import RetryPolicy, StorageUnavailableError
from setfit_core.artifacts.stagedir import StageWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")



class ArtifactStore:
    """Content-addressed stage storage under a local directory or ``s3://bucket/prefix``.

    S3 credentials come from the usual AWS environment/config; ``storage_options`` go
    to s3fs (e.g. ``{"endpoint_url": ...}``; ``AWS_ENDPOINT_URL`` also works). Remote calls
    that fail transiently (connection refused or dropped, timeout, 5xx) are tried
    ``retry_attempts`` times in all, waiting ``retry_base_delay_s``, then double that, between.
    ``lease_policy`` says how long a run waits for a stage another run is computing (`leases.py`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        storage_options: dict[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        retry_attempts: int = 4,
        retry_base_delay_s: float = 0.5,
        lease_policy: LeasePolicy | None = None,
    ) -> None:
        self.root, self._scheme = _normalize_root(root)
        self.lease_policy = lease_policy or LeasePolicy()
        self._retry = RetryPolicy(retry_attempts, retry_base_delay_s)
        options = s3.client_options(storage_options or {}) if self._scheme == "s3" else dict(storage_options or {})
        self._secrets = s3.secret_values(options) if self._scheme == "s3" else ()
        self._fs, base = fsspec.core.url_to_fs(self.root, **options)
        if self._scheme == "s3":
            # s3fs retries dropped connections and read timeouts itself (5 tries, 15 s read timeout
            # each; a class attribute, no option): under our retries that would multiply into
            # minutes against a dead endpoint. retry_attempts is the one knob.
            self._fs.retries = 1
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
        uri = self.stage_uri(manifest.stage, manifest.key)
        files = self._remote(lambda: stagedir.check_files(self._fs, stage_dir, manifest.files), f"verify stage {uri}")
        return stagedir.key_problems(manifest) + files

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

    def checkpoint_dir(self, stage: str, key: str) -> Path:
        """A local directory for a stage computation's checkpoints, the same for every run of that key, so a
        rerun after an interruption can resume: beside the stage under a local root, in the local cache for
        S3 (checkpoints are not uploaded: a rerun on another machine starts over)."""
        base = Path(self._base) if self.is_local else self._cache_root
        return base / validate_stage_name(stage) / f"{stagedir.CHECKPOINTS_PREFIX}{validate_key(key)}"

    def claim(self, stage: str, key: str) -> tuple[Lease | None, Manifest | None]:
        """The right to compute a stage that is not there yet, shared with concurrent runs (`leases.py`).

        Returns ``(lease, None)``: compute and publish it, then ``lease.release()``; or ``(None, manifest)``:
        another run published it meanwhile (after this one waited, if that run was still computing it).
        """
        directory = f"{self._base}/{validate_stage_name(stage)}/{LEASE_DIR_PREFIX}{validate_key(key)}"
        files = LeaseFiles(self._fs, directory, self.is_local, self._remote)
        return acquire_or_wait(files, self.lease_policy, lambda: self.find(stage, key), f"{stage} {key[:12]}")

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
            self._remote(lambda: self._fs.pipe_file(probe, b""), f"write to {self.root}")
            self._remote(lambda: self._fs.rm_file(probe), f"write to {self.root}")
        except StorageUnavailableError:
            raise  # unreachable, not unwritable: its message already says so
        except OSError as exc:
            if s3.is_explained(exc):
                raise  # no credentials, no such bucket, ...: it names what to set
            reason = exc.strerror or type(exc).__name__
            raise PermissionError(
                f"artifacts_root {self.root!r} is not writable ({reason}: {exc.filename or probe}); pick a "
                "directory (or s3://bucket/prefix) you can write to, or fix its permissions"
            ) from exc

    def delete_stage(self, stage: str, key: str) -> None:
        """Remove a stage: manifest first, so a half-deleted stage is never trusted."""
        path = self._stage_path(stage, key)
        if self.is_local:
            if os.path.exists(f"{path}/{MANIFEST_NAME}"):
                os.remove(f"{path}/{MANIFEST_NAME}")
            stagedir.remove_tree(Path(path))
            return
        self._remote(lambda: self._delete_objects(path), f"delete stage {self.stage_uri(stage, key)}")
        stagedir.remove_tree(self._cache_path(stage, key))

    def cleanup_temp(self, older_than_s: float = 3600) -> list[str]:
        """Remove what crashed writers left behind; returns the paths / URIs removed.

        Local: ``.tmp-*`` / ``.trash-*`` / ``.lease-*`` dirs. S3: the local cache's temp dirs, plus remote
        ``.tmp-*`` prefixes (parts of a sharded run), leases of crashed runs, and stage prefixes with no
        manifest (an upload that never finished). Age is the newest file or object inside; choose ``older_than_s``
        longer than any stage takes to write, or an in-progress write could be removed.
        """
        base = Path(self._base) if self.is_local else self._cache_root
        removed = [str(path) for path in stagedir.remove_stale_temp(base, older_than_s)]
        if not self.is_local:
            removed += self._remove_stale_remote(older_than_s)
        return removed

    # -- internals ----------------------------------------------------------------

    def _stage_path(self, stage: str, key: str) -> str:
        return f"{self._base}/{validate_stage_name(stage)}/{validate_key(key)}"

    def _cache_path(self, stage: str, key: str) -> Path:
        return self._cache_root / validate_stage_name(stage) / validate_key(key)

    def _remove_stale_remote(self, older_than_s: float) -> list[str]:
        cutoff, removed = time.time() - older_than_s, []
        for stage in [n for n in self._names(self._base) if STAGE_NAME_PATTERN.fullmatch(n)]:
            for name in self._names(f"{self._base}/{stage}"):
                prefix = f"{self._base}/{stage}/{name}"
                is_temp = name.startswith((stagedir.TMP_PREFIX, LEASE_DIR_PREFIX))
                if not is_temp and not (KEY_PATTERN.fullmatch(name) and not self._has_manifest(prefix)):
                    continue
                objects = self._remote(lambda p=prefix: self._fs.find(p, detail=True), f"list {self.root}")
                newest = max((s3.modified_time(info) for info in objects.values()), default=0.0)
                if objects and newest < cutoff:
                    self._remote(lambda o=list(objects): self._fs.rm(o), f"clean up {self.root}")
                    logger.info("removed leftover s3://%s (%d objects)", prefix, len(objects))
                    removed.append(f"s3://{prefix}")
        return removed

    def _has_manifest(self, prefix: str) -> bool:
        return self._remote(lambda: self._fs.exists(f"{prefix}/{MANIFEST_NAME}"), f"list {self.root}")

    def _remote(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, retried on transient S3 errors (see ``RetryPolicy``); local calls run once. A failure
        with a usual cause (no credentials, an unreachable endpoint, no bucket) says what to set."""
        if self.is_local:
            return fn()
        with s3.explained(what, self.root):
            return self._retry.call(fn, what, self._redact)

    def _redact(self, text: str) -> str:
        return s3.redact(text, self._secrets)

    def _names(self, path: str) -> list[str]:
        try:
            entries = self._remote(lambda: self._fs.ls(path, detail=False), f"list {self.root}")
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries]

    def _read_manifest(self, stage: str, key: str) -> Manifest | None:
        """Parse a stage's manifest without checking files; warn if it is corrupt."""
        source = f"{self.stage_uri(stage, key)}/{MANIFEST_NAME}"
        try:
            path = f"{self._stage_path(stage, key)}/{MANIFEST_NAME}"
            text = self._remote(lambda: self._fs.cat_file(path), f"read {source}")
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
        what = f"upload stage {self.stage_uri(manifest.stage, manifest.key)}"
        self._remote(lambda: self._unpublish(prefix, manifest), what)
        for entry in manifest.files:
            source, target = str(local_dir / entry.path), f"{prefix}/{entry.path}"
            # Bind per iteration: a retry must upload this file, not the loop's last one.
            self._remote(lambda s=source, t=target: self._fs.put_file(s, t), what)
        self._remote(lambda: self._fs.pipe_file(manifest_path, manifest.to_json().encode("utf-8")), what)

    def _delete_objects(self, path: str) -> None:
        manifest_path = f"{path}/{MANIFEST_NAME}"
        if self._fs.exists(manifest_path):
            self._fs.rm_file(manifest_path)
        if objects := self._fs.find(path):
            self._fs.rm(objects)

    def _unpublish(self, prefix: str, manifest: Manifest) -> None:
        """Remove an unverifiable manifest, then objects an earlier partial upload left behind."""
        manifest_path = f"{prefix}/{MANIFEST_NAME}"
        if self._fs.exists(manifest_path):
            self._fs.rm_file(manifest_path)
        wanted = {f"{prefix}/{entry.path}" for entry in manifest.files}
        if stale := [p for p in self._fs.find(prefix) if p not in wanted]:
            self._fs.rm(stale)

    def _download(self, manifest: Manifest, dest: Path) -> None:
        """Fetch a stage's files into ``dest``, then check them against the manifest."""
        prefix = self._stage_path(manifest.stage, manifest.key)
        what = f"download stage {self.stage_uri(manifest.stage, manifest.key)}"
        for entry in manifest.files:
            source, target = f"{prefix}/{entry.path}", dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            self._remote(lambda s=source, t=target: self._fs.get_file(s, str(t)), what)
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

"""Operations on one stage directory: hash it, verify it, publish it atomically.

Publishing relies on ``os.rename`` of a finished directory being atomic on one
filesystem: readers see either no stage or a complete one, never a half-written one,
and of several concurrent writers exactly one wins. (File locks were tried and proved
unreliable across processes: a reader can see a half-written lock file.)
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from setfit_core.artifacts.keys import STAGE_NAME_PATTERN, sha256_file, sha256_fileobj, stage_key
from setfit_core.artifacts.leases import LEASE_DIR_PREFIX
from setfit_core.artifacts.manifest import MANIFEST_NAME, FileEntry, Manifest, validate_relpath

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# <stage>/.checkpoints-<key>/: a computation's intermediate state, kept until its stage is published.
CHECKPOINTS_PREFIX = ".checkpoints-"
_PUBLISH_ATTEMPTS = 5
LOCAL_FS = fsspec.filesystem("file")


@dataclass
class StageWriter:
    """Handed out by ``write_stage``: write files into ``dir``, fill metrics/timings."""

    dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    manifest: Manifest | None = None  # set when the with-block exits normally


def key_problems(manifest: Manifest) -> list[str]:
    expected = stage_key(manifest.stage, manifest.config, manifest.parents, manifest.inputs, manifest.versions)
    if expected == manifest.key:
        return []
    return [f"config/parents/inputs/versions hash to {expected}, not to its key (edited manifest?)"]


def check_files(fs: Any, stage_dir: str, files: tuple[FileEntry, ...]) -> list[str]:
    """Size first (one HEAD on S3), then stream the content through sha256."""
    problems = []
    for entry in files:
        path = f"{stage_dir}/{entry.path}"
        try:
            info = fs.info(path)
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        if info.get("type") != "file" or info.get("size") != entry.size:
            problems.append(f"{entry.path}: size {info.get('size')} != recorded {entry.size}")
            continue
        with fs.open(path, "rb") as fileobj:
            digest = sha256_fileobj(fileobj)
        if digest != entry.sha256:
            problems.append(f"{entry.path}: sha256 {digest} != recorded {entry.sha256}")
    return problems


def verified_local_copy(path: Path, manifest: Manifest) -> Manifest | None:
    """``manifest`` if the local directory ``path`` holds exactly its files, else None."""
    if not path.is_dir():
        return None
    if problems := check_files(LOCAL_FS, str(path), manifest.files):
        logger.warning("local copy %s did not verify (%s)", path, "; ".join(problems))
        return None
    return manifest


def hash_tree(root: Path) -> tuple[FileEntry, ...]:
    entries = []
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            # A link would make the stage depend on (or leak) a file outside it.
            raise ValueError(f"stage files must be regular files; {rel!r} is a link or special")
        if path.is_file():
            entries.append(FileEntry(validate_relpath(rel), path.stat().st_size, sha256_file(path)))
    return tuple(sorted(entries, key=lambda e: e.path))


def make_temp_dir(parent: Path, key: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{TMP_PREFIX}{key}-{secrets.token_hex(6)}"
    path.mkdir()  # honours the umask, unlike mkdtemp's 0o700: a shared root stays readable
    return path


def publish_dir(tmp: Path, target: Path, manifest: Manifest, find_existing: Callable[[], Manifest | None]) -> Manifest:
    """Write the manifest into ``tmp`` and rename it to ``target``; first writer wins."""
    (tmp / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    for _ in range(_PUBLISH_ATTEMPTS):
        try:
            os.rename(tmp, target)  # atomic: readers see no stage or a complete one
            return manifest
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise
        if (existing := find_existing()) is not None:
            return existing  # identical content by construction; caller removes ours
        move_aside(target)
    raise RuntimeError(f"could not publish {target}: it kept being replaced by other writers")


def move_aside(target: Path) -> None:
    trash = target.parent / f"{TRASH_PREFIX}{target.name}-{secrets.token_hex(6)}"
    try:
        os.rename(target, trash)
    except FileNotFoundError:
        return  # another writer moved it already
    logger.warning("replacing unverifiable %s (moved aside to %s)", target, trash.name)
    remove_tree(trash)


def remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, onerror=_log_remove_error)


def _log_remove_error(func: Any, path: str, exc_info: Any) -> None:
    # Leftovers are harmless (find ignores them, cleanup_temp retries); do not mask the
    # exception that may be propagating.
    logger.warning("could not remove %s: %s", path, exc_info[1])


def newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for child in path.rglob("*"):
        newest = max(newest, child.lstat().st_mtime)
    return newest


def remove_stale_temp(base: Path, older_than_s: float) -> list[Path]:
    """Remove ``<base>/<stage>/.tmp-*``, ``.trash-*``, ``.lease-*`` (`leases.py`) and ``.checkpoints-*`` (an
    interrupted run's) dirs older than ``older_than_s``."""
    cutoff = time.time() - older_than_s
    removed = []
    for stage_dir in base.glob("*") if base.is_dir() else []:
        if not STAGE_NAME_PATTERN.fullmatch(stage_dir.name) or not stage_dir.is_dir():
            continue
        for entry in stage_dir.iterdir():
            is_leftover = entry.name.startswith((TMP_PREFIX, TRASH_PREFIX, LEASE_DIR_PREFIX, CHECKPOINTS_PREFIX))
            if is_leftover and newest_mtime(entry) < cutoff:
                remove_tree(entry)
                removed.append(entry)
    return removed

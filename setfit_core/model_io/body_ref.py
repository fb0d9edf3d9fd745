"""A model directory that takes its body from another directory: ``body_ref.json``.

The pipeline's ``model`` stage stores the head files and ``config_setfit.json`` and, instead of a copy
of the body's weights, a reference to the stage that holds them::

    <root>/model/<key>/body_ref.json   {"format_version": 1, "stage": "body", "key": "<64 hex>",
                                        "path": "../../body/<64 hex>"}

``path`` is relative to the model directory, so the reference resolves under a local artifacts root
and under the S3 store's local cache alike (both keep the ``<stage>/<key>`` layout). ``stage`` is
``body``, or ``head`` for an end-to-end model, whose fine-tuned body lives in its head stage.

`resolve_body_dir` is the one place that follows a reference; `body_loading.resolve_model_location`
calls it, so `SetFitModel.from_pretrained`, `load_body` and the base-model checks of a training run
all see the referenced body. A reference is checked strictly (stage, key and path must agree), so a
``body_ref.json`` cannot point a loader at an arbitrary directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

BODY_REF_FILE = "body_ref.json"
BODY_REF_VERSION = 1
# Stages that can hold a model's body: the body stage, or an end-to-end head stage (a whole model).
BODY_STAGES = ("body", "head")
_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class BodyRef:
    stage: str
    key: str

    def __post_init__(self) -> None:
        if self.stage not in BODY_STAGES:
            raise ValueError(f"a body reference names stage 'body' or 'head'; got {self.stage!r}")
        if not isinstance(self.key, str) or not _KEY.fullmatch(self.key):
            raise ValueError(f"a body reference names a 64-hex stage key; got {self.key!r}")

    @property
    def path(self) -> str:
        """Where the stage is, relative to a model stage directory ``<root>/model/<key>``."""
        return f"../../{self.stage}/{self.key}"

    def to_json(self) -> str:
        data = {"format_version": BODY_REF_VERSION, "stage": self.stage, "key": self.key, "path": self.path}
        return json.dumps(data, indent=2)


def write_body_ref(directory: str | Path, ref: BodyRef) -> Path:
    path = Path(directory) / BODY_REF_FILE
    path.write_text(ref.to_json(), encoding="utf-8")
    return path


def read_body_ref(directory: str | Path) -> BodyRef | None:
    """The directory's reference, or None when it holds its own body (no ``body_ref.json``)."""
    path = Path(directory) / BODY_REF_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ref = BodyRef(data["stage"], data["key"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a valid body reference ({exc}); it must hold {{\"stage\": \"body\", \"key\": "
            "<64 hex>, \"path\": \"../../body/<key>\"}}. Re-export the model, or remove the file and put the "
            "body's files in the directory"
        ) from exc
    if data.get("path") != ref.path:
        raise ValueError(f"{path}: 'path' must be {ref.path!r} for stage {ref.stage} {ref.key[:12]}; got "
                         f"{data.get('path')!r}. Re-export the model")
    return ref


def resolve_body_dir(directory: str | Path) -> Path | None:
    """The directory holding `directory`'s body when it references one, else None.

    Raises FileNotFoundError naming the missing path and the fixes when the referenced stage is not there.
    """
    ref = read_body_ref(directory)
    if ref is None:
        return None
    # resolve() applies ".." after following a symlinked model directory, as opening the path would.
    body = (Path(directory) / ref.path).resolve()
    if not body.is_dir():
        raise FileNotFoundError(
            f"model directory {str(directory)!r} takes its body from {ref.stage} stage {ref.key[:12]} at "
            f"{str(body)!r} ({BODY_REF_FILE}), which does not exist. Keep the model inside its artifacts root "
            f"beside that stage: rerun the training job that made it (it recomputes the {ref.stage} stage under "
            f"the same key), or for an s3:// root load it through setfit_core.pipeline.batch_predict.fetch_model, "
            f"which fetches both stages. To move a model alone, train it with self_contained=True "
            f"(setfit-pipeline train --self-contained)"
        )
    return body


__all__ = ["BODY_REF_FILE", "BodyRef", "read_body_ref", "resolve_body_dir", "write_body_ref"]

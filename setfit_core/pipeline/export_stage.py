"""Export stage (``model``): a directory `SetFitModel.from_pretrained` loads, keyed by its parents.

Export copies files and never loads a model. Two layouts, chosen by the stage config's
``self_contained`` (a `PipelineJob` field, so part of the key):

- **By reference** (the default): the head stage's files (head weights, ``config_setfit.json``) plus
  ``body_ref.json``, which names the stage holding the body's weights and its path relative to this
  directory, ``../../body/<key>`` (`setfit_core.model_io.body_ref`). Models that share a body store its
  weights once, in the body stage. The directory loads in place: under a local root, or from the S3
  store's local cache, which keeps the same ``<stage>/<key>`` layout (`batch_predict.fetch_model` fetches
  the referenced stage too). The referenced stage is a parent of this stage, so `artifacts gc` keeps it
  as long as it keeps the model.
- **Self-contained**: the body stage's files and the head stage's, i.e. exactly what
  `SetFitModel.save_pretrained` writes: one directory to ship on its own.

An end-to-end model's fine-tuned body lives in its head stage (a whole model): by reference, the model
stage holds that stage's head files (`HEAD_FILES`) and references the head stage for the body.

With ``onnx`` in the stage config (`PipelineJob.export_onnx`), export also loads the model on CPU and writes
its body as an ONNX graph (`setfit_core.model_io.onnx_export.write_onnx`: ``onnx/...`` plus the ``"onnx"``
entry of ``config_setfit.json``), in either layout: ``from_pretrained(uri, backend="onnx")`` and batch
prediction with ``engine="onnx"`` load it, and the torch model loads from the same directory as before.

Either way the directory's ``README.md`` is the SetFit model card (`setfit_core.model_io.model_card_render`),
never the body's sentence-transformers card: written from the card data the run passes (`pipeline.card`:
metrics, frozen-probe baseline, data hashes, hyperparameters) and what the directory holds (labels, head, ONNX
graph, body reference).

The manifest's ``metrics`` hold ``bytes`` (what the directory holds), ``body_ref`` (the referenced stage,
or null when self-contained) and, when the run knows it, ``lineage`` (`setfit_core.pipeline.lineage`):
the training setup the model belongs to, read by `artifacts gc --keep-last`. Metrics are not part of the
key, so the lineage never changes a model's key.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.manifest import MANIFEST_NAME
from setfit_core.artifacts.stagedir import StageWriter
from setfit_core.model_io.body_ref import BodyRef, write_body_ref
from setfit_core.model_io.model_card import SetFitModelCardData
from setfit_core.model_io.model_card_render import facts_of_directory, write_model_card
from setfit_core.model_io.setfit_format import HEAD_FILES
from setfit_core.pipeline.plan import StageSpec
from setfit_core.pipeline.results import StageResult, find_or_compute, parent_dir


def run_export(
    store: ArtifactStore, spec: StageSpec, lineage: dict[str, Any] | None = None,
    card_data: Callable[[], SetFitModelCardData] | None = None,
) -> StageResult:
    """`lineage` is recorded in the manifest of a model this call computes (a reused one keeps its own);
    `card_data()` (called only then) gives its model card's content, an empty card without it."""

    def compute(writer: StageWriter) -> None:
        ref = None if spec.config["self_contained"] else body_ref(spec)
        if ref is None:
            for parent in ("body", "head"):
                if parent in spec.parents:
                    copy_stage_files(parent_dir(store, spec, parent), writer.dir)
        else:
            only = None if ref.stage == "body" else HEAD_FILES  # an end-to-end head stage holds a body too
            copy_stage_files(parent_dir(store, spec, "head"), writer.dir, only)
            write_body_ref(writer.dir, ref)
        if spec.config.get("onnx") is not None:
            export_graph(store, spec, writer.dir)
        write_card(store, spec, writer.dir, card_data() if card_data is not None else SetFitModelCardData())
        size = sum(p.stat().st_size for p in writer.dir.rglob("*") if p.is_file())
        writer.metrics.update(bytes=size, body_ref={"stage": ref.stage, "key": ref.key} if ref else None)
        if lineage is not None:
            writer.metrics["lineage"] = dict(lineage)

    return find_or_compute(store, spec, compute)


def write_card(store: ArtifactStore, spec: StageSpec, directory: Path, data: SetFitModelCardData) -> None:
    """``README.md``: the model card, replacing a copied body's sentence-transformers card. Of the body it reads
    one small file (its max_seq_length), so a referenced body on S3 is not downloaded for it."""
    ref = body_ref(spec)
    # sentence-transformers < 6 saves max_seq_length in sentence_bert_config.json, 6 in the tokenizer's config.
    found = [_json_value(store, ref, name, key) for name, key in (("sentence_bert_config.json", "max_seq_length"),
                                                                  ("tokenizer_config.json", "model_max_length"))]
    max_seq_length = next((n for n in found if isinstance(n, int) and n < 100_000), None)  # "none": a huge int
    write_model_card(directory, data, facts_of_directory(directory, max_seq_length))


def _json_value(store: ArtifactStore, ref: BodyRef, name: str, key: str) -> Any:
    try:
        with store.open_file(ref.stage, ref.key, name, "r") as fileobj:
            value = json.load(fileobj)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value.get(key) if isinstance(value, dict) else None


def export_graph(store: ArtifactStore, spec: StageSpec, directory: Path) -> int:
    """Write the ONNX graph of the model the parents make into `directory`; returns the bytes written."""
    from setfit_core.model_io.onnx_export import add_entry, write_onnx

    onnx = spec.config["onnx"]
    model = assemble_model(parent_dir(store, spec, body_ref(spec).stage), parent_dir(store, spec, "head"))
    entry = write_onnx(model, directory, onnx["quantize"], onnx["opset"])
    add_entry(directory, entry)
    return (directory / entry.file).stat().st_size


def assemble_model(body_dir: Path, head_dir: Path):
    """The `SetFitModel` of a body stage (or an end-to-end head stage) and a head stage, on CPU."""
    from setfit_core.model_io.body_loading import load_body
    from setfit_core.model_io.setfit_format import load_saved_head, read_saved_config
    from setfit_core.modeling import SetFitModel

    config = read_saved_config(str(head_dir))
    head = load_saved_head(str(head_dir), config, device="cpu", trust_pickle=False)
    return SetFitModel(load_body(str(body_dir), device="cpu"), head, labels=config.get("labels"),
                       multi_target_strategy=config.get("multi_target_strategy"),
                       normalize_embeddings=config.get("normalize_embeddings", False))


def body_ref(spec: StageSpec) -> BodyRef:
    """The parent stage that holds the model's body weights: the body stage, or an end-to-end head stage."""
    if "body" in spec.parents:
        return BodyRef("body", spec.parents["body"])
    return BodyRef("head", spec.parents["head"])


def copy_stage_files(source: Path, target: Path, only: tuple[str, ...] | None = None) -> int:
    """Copy a stage's files (not its manifest; with `only`, just those names) into `target`; returns bytes."""
    copied = 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or rel.as_posix() == MANIFEST_NAME or (only is not None and rel.as_posix() not in only):
            continue
        destination = target / rel
        if destination.exists():  # body and head files never share a name; if they did, one would be lost
            raise FileExistsError(f"{rel.as_posix()!r} comes from two parent stages; cannot assemble the model")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        copied += destination.stat().st_size
    return copied

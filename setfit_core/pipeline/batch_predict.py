"""Batch prediction: texts from Parquet / CSV / JSONL (local or ``s3://``) to a Parquet of predictions.

Output columns: ``text``, ``predicted_label`` (the class name when the model knows names, else the
class id), ``predicted_id`` and ``probabilities`` (fixed-size list<float32>, one per class). Parquet
input is streamed one batch at a time; rows are written as one row group per batch.

``engine="onnx"`` predicts with the model's ONNX export (`SetFitModel.export_onnx`, or a pipeline model
trained with ``export_onnx``) through onnxruntime; ``"torch"`` (the default) with its torch body.
On a GPU, ``inference_dtype`` ("float16", "bfloat16", "auto") runs the torch body in half precision, and
``batch_size=None`` (the default) is 256 texts a batch there, `CPU_BATCH_SIZE` on a CPU.

The output is one Parquet file. An output that names a directory (an existing local directory, an S3
prefix with objects under it, or any URI ending in "/") gets `PREDICTIONS_FILE` inside it
(`resolve_output`). The file appears complete or not at all: a local one is written to a hidden temp
file beside it and renamed over it; an S3 upload is aborted on failure.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from setfit_core.artifacts import ArtifactStore
from setfit_core.artifacts.s3 import explained
from setfit_core.engine.inference import check_inference_dtype, resolve_batch_size
from setfit_core.model_io.body_loading import resolve_model_location
from setfit_core.model_io.body_ref import read_body_ref
from setfit_core.modeling import SetFitModel
from setfit_core.pipeline.data_io import read_columns, url_to_fs, write_tables
from setfit_core.pipeline.results import ProgressFn

_STAGE_URI = re.compile(r"^(?P<root>.+)/model/(?P<key>[0-9a-f]{64})/?$")
# <root>/<stage>/<key or a prefix of 8+ hex characters>, as `artifacts ls` prints keys.
_ANY_STAGE_URI = re.compile(r"^(?P<root>.+)/(?P<stage>pairs|body|embeddings|head|evaluation|model)/"
                            r"(?P<key>[0-9a-f]{8,64})/?$")
# The file written inside an output that names a directory.
PREDICTIONS_FILE = "predictions.parquet"
ENGINES = ("torch", "onnx")
# Texts per encoding batch on a CPU when no batch_size is given (a GPU takes GPU_BATCH_SIZE).
CPU_BATCH_SIZE = 64


def check_engine(engine: Any) -> str:
    """`engine`, checked before any model is fetched; "onnx" needs the onnx extra."""
    if engine not in ENGINES:
        raise ValueError(f"'engine' must be one of {list(ENGINES)}; got {engine!r}")
    if engine == "onnx":
        from setfit_core.model_io.onnx_format import require_onnx

        try:
            require_onnx("engine='onnx'")
        except ImportError as exc:  # a value the user can change
            raise ValueError(str(exc)) from exc
    return engine


def resolve_output(output_data: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """The Parquet file predictions go to: `output_data`, or `<output_data>/predictions.parquet` where it
    names a directory (an existing local directory, an S3 prefix with objects under it, a trailing "/")."""
    output_data = str(output_data)
    fs, path = url_to_fs(output_data, storage_options)
    if output_data.endswith("/") or fs.isdir(path):
        return f"{output_data.rstrip('/')}/{PREDICTIONS_FILE}"
    return output_data


def resolve_model_uri(model: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """`model` as the model to predict with: ``<root>/model/<prefix>`` becomes the one model stage whose key
    starts with the prefix (as `artifacts show` takes it); another stage of a training run (a body, say) or
    a missing local path is an error that says what to pass instead."""
    model = str(model)
    match = _ANY_STAGE_URI.match(model)
    if match is None:
        if "://" not in model:
            try:
                resolve_model_location(model)  # a hub id passes; a local path must exist
            except FileNotFoundError:
                raise FileNotFoundError(f"model {model!r} does not exist; pass the model directory a training run "
                                        "printed (model: ...), or <root>/model/<key>") from None
        return model
    root, stage, key = match["root"], match["stage"], match["key"]
    store = ArtifactStore(root, storage_options=dict(storage_options or {}))
    if stage != "model":
        raise ValueError(f"model {model!r} is the {stage} stage of a training run, not a model; use "
                         f"{root}/model/<key> (`setfit-pipeline artifacts ls {root} --stage model` lists them)")
    if len(key) == 64:
        return model
    from setfit_core.artifacts.listing import resolve_key

    full = resolve_key([m.key for m in store.list_stages("model")], key, "model")
    return store.stage_uri("model", full)


@contextlib.contextmanager
def fetch_model(model: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[str]:
    """A local directory holding `model`: a local path, a hub id, or an ``s3://`` directory.

    A pipeline ``model`` stage (``<root>/model/<key>``, or a key prefix) is verified against its manifest first,
    and so is the stage its ``body_ref.json`` references: for an S3 root both land in the store's local cache,
    in the ``<stage>/<key>`` layout the reference's relative path expects.
    """
    model = resolve_model_uri(model, storage_options)
    match = _STAGE_URI.match(str(model))
    if match and _exists(f"{model.rstrip('/')}/manifest.json", storage_options):
        store = ArtifactStore(match["root"], storage_options=dict(storage_options or {}))
        location = store.local_path("model", match["key"])
        _fetch_referenced_stage(store, match["key"], location)
        yield str(location)
        return
    if not str(model).startswith("s3://"):
        yield model
        return
    fs, path = url_to_fs(model, storage_options)
    with tempfile.TemporaryDirectory(prefix="setfit-model-") as tmp:
        # <tmp>/model/m and, for a model that references its body, <tmp>/<stage>/<key>: the relative layout
        # body_ref.json expects.
        target = Path(tmp) / "model" / "m"
        with explained(f"download model {model}", model):
            fs.get(f"{path.rstrip('/')}/", str(target), recursive=True)
            if (ref := read_body_ref(target)) is not None:
                source = posixpath.normpath(f"{path.rstrip('/')}/{ref.path}")
                fs.get(f"{source}/", str(Path(tmp) / ref.stage / ref.key), recursive=True)
        yield str(target)


def _fetch_referenced_stage(store: ArtifactStore, model_key: str, location: Path) -> None:
    """Make the stage a model stage's ``body_ref.json`` names available, verified, beside the model."""
    ref = read_body_ref(location)
    if ref is None:
        return  # a self-contained model
    try:
        store.local_path(ref.stage, ref.key)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"model stage {model_key[:12]} under {store.root} takes its body from {ref.stage} stage {ref.key[:12]}, "
            f"which is not there or does not verify ({exc}). Rerun the training job that made the model (it "
            f"recomputes that stage under the same key), or train with self_contained=True for a model that "
            f"holds its own body"
        ) from exc


def _exists(uri: str, storage_options: Mapping[str, Any] | None) -> bool:
    fs, path = url_to_fs(uri, storage_options)
    return fs.exists(path)


def is_parquet(uri: str) -> bool:
    return PurePosixPath(uri).suffix.lower() in (".parquet", ".pq")


@contextlib.contextmanager
def open_parquet(uri: str, text_column: str, storage_options: Mapping[str, Any] | None) -> Iterator[pq.ParquetFile]:
    """A Parquet input, its text column checked (not read: callers stream it or read the footer)."""
    fs, path = url_to_fs(uri, storage_options)
    with explained(f"read input_data {uri}", uri):
        found = fs.exists(path)
    if not found:
        raise FileNotFoundError(f"input_data {uri!r} does not exist")
    with explained(f"read input_data {uri}", uri), fs.open(path, "rb") as fileobj:
        parquet = pq.ParquetFile(fileobj)
        check_column(parquet.schema_arrow.names, text_column, uri)
        yield parquet


def iter_texts(uri: str, text_column: str, rows: int, storage_options: Mapping[str, Any] | None) -> Iterator[list]:
    """Lists of texts, `rows` at a time; Parquet is streamed, CSV / JSONL are read whole."""
    if is_parquet(uri):
        with open_parquet(uri, text_column, storage_options) as parquet:
            for batch in parquet.iter_batches(batch_size=rows, columns=[text_column]):
                yield batch.column(0).to_pylist()
        return
    columns = read_columns(uri, "input_data", storage_options)
    check_column(list(columns), text_column, uri)
    texts = columns[text_column]
    for start in range(0, len(texts), rows):
        yield texts[start : start + rows]


def check_column(names: list[str], text_column: str, uri: str) -> None:
    if text_column not in names:
        raise ValueError(f"input_data {uri!r} has no column {text_column!r}; found {names}. Pass text_column=...")


def check_texts(texts: list, offset: int, uri: str) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"input_data {uri!r} row {offset + i} is {text!r}; every text must be a string")


def predictions(model: SetFitModel, texts: list[str], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, probabilities): one encoding pass, the class is the most probable one."""
    probs = np.asarray(model.predict_proba(texts, batch_size=batch_size, as_numpy=True), dtype=np.float32)
    ids = probs.argmax(axis=1)
    classes = getattr(model.model_head, "classes_", None)  # scikit-learn columns follow classes_
    return (np.asarray(classes)[ids] if classes is not None else ids).astype(np.int64), probs


def predict_to_parquet(
    model: str,
    input_data: str,
    output_data: str,
    text_column: str = "text",
    batch_size: int | None = None,
    rows_per_group: int = 4096,
    storage_options: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    device: str | None = None,
    engine: str = "torch",
    inference_dtype: str | None = None,
) -> dict[str, Any]:
    """Predict every text of `input_data` with `model`; returns rows, seconds, the engine and the output file's
    URI (`resolve_output`: a directory gets `PREDICTIONS_FILE` inside it)."""
    started = time.perf_counter()
    check_engine(engine)
    check_inference_dtype(inference_dtype)
    output_data = resolve_output(output_data, storage_options)
    with fetch_model(model, storage_options) as location:
        loaded = load_predictor(model, location, device, engine, inference_dtype)
        batch_size = resolve_batch_size(batch_size, loaded.device, CPU_BATCH_SIZE)
        fs, path = url_to_fs(output_data, storage_options)
        rows = _write_predictions(loaded, iter_texts(input_data, text_column, rows_per_group, storage_options),
                                  fs, path, batch_size, input_data, progress)
    return {"output_data": output_data, "rows": rows, "seconds": time.perf_counter() - started, "engine": engine}


def load_predictor(model: str, location: str, device: str | None, engine: str = "torch",
                   inference_dtype: str | None = None) -> SetFitModel:
    """The model at `location` (fetched from `model`) on `engine`, checked to be one batch prediction supports;
    half precision (`inference_dtype`) on a CPU is an error here, before any row is read."""
    try:
        loaded = SetFitModel.from_pretrained(location, device=device, backend=check_engine(engine),
                                             inference_dtype=inference_dtype)
    except ValueError as exc:
        if engine != "onnx" or "has no ONNX export" not in str(exc):
            raise
        raise ValueError(f"model {model!r} has no ONNX export, so engine='onnx' cannot run it: train it with "
                         "export_onnx=true (setfit-pipeline train --export-onnx), or predict with engine='torch'"
                         ) from exc
    if loaded.multi_label:
        raise ValueError(f"model {model!r} is multi-label; batch prediction supports single-label models")
    return loaded


def _write_predictions(model, batches, fs, path: str, batch_size: int, uri: str, progress: ProgressFn | None) -> int:
    return write_atomically(fs, path, lambda fileobj: _write_rows(model, batches, fileobj, batch_size, uri, progress))


def write_atomically(fs, path: str, write: Callable[[Any], int]) -> int:
    """`write(fileobj)` into the file `path` on `fs` so that a failure (an error, Ctrl-C) leaves neither a
    half-written file nor a temp file; returns what `write` returned. A local file is written to a hidden
    temp file beside it and renamed over it in one step (`os.replace`: atomic, and it never moves a file
    into a directory); an S3 upload is aborted on failure. `path` must not be a directory."""
    if "file" not in fs.protocol:
        uri = f"s3://{path}"
        with explained(f"write {uri}", uri):
            fileobj = fs.open(path, "wb")
        try:
            with explained(f"write {uri}", uri):
                rows = write(fileobj)
        except BaseException:
            fileobj.discard()  # aborts the multipart upload
            fileobj.closed = True  # else its finaliser would try to upload what discard() dropped
            raise
        fileobj.close()
        return rows
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"output {path!r} is a directory; name a file, e.g. {path.rstrip('/')}/"
                                f"{PREDICTIONS_FILE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as fileobj:
            rows = write(fileobj)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _write_rows(model, batches, fileobj, batch_size: int, uri: str, progress: ProgressFn | None) -> int:
    def tables() -> Iterator[pa.Table]:
        rows = 0
        for texts in batches:
            check_texts(texts, rows, uri)
            ids, probs = predictions(model, texts, batch_size)
            yield prediction_table(model, texts, ids, probs)
            rows += len(texts)
            if progress is not None:
                progress(rows, rows, f"predicted {rows} rows")

    rows = write_tables(fileobj, tables())
    if rows == 0:
        raise ValueError(f"input_data {uri!r} has no rows to predict")
    return rows


def prediction_table(model: SetFitModel, texts: list[str], ids: np.ndarray, probs: np.ndarray) -> pa.Table:
    labels = [model.labels[i] for i in ids] if model.labels is not None else ids
    return pa.table({
        "text": pa.array(texts, pa.string()),
        "predicted_label": pa.array(labels),
        "predicted_id": pa.array(ids, pa.int64()),
        "probabilities": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1), pa.float32()), probs.shape[1]),
    })

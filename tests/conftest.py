"""Shared fixtures: offline settings, a tiny sentence-transformers model, demo and real data, a loopback S3."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never reach a hub or telemetry endpoint.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUCKET = "setfit-artifacts"


def shared_dataset(name: str) -> Path:
    """`../shared/data/<name>`, or skip: a user's clone has no shared data (CI does)."""
    path = SHARED_DATA / name
    if not (path / "train.parquet").exists():
        pytest.skip(f"needs the shared dataset {path} (present in CI and developer checkouts, not in a user's clone)")
    return path


def few_shot(train, n: int, seed: int):
    """The few-shot sample: per label in ascending order, `sample(n, random_state=seed)`, concatenated."""
    import pandas as pd

    return pd.concat(
        [train[train.label == lab].sample(n=n, random_state=seed) for lab in sorted(train.label.unique())],
        ignore_index=True,
    )


TINY_WORDS = (
    "good great fine nice happy love bad awful poor sad hate terrible movie film plot actor the a is was it "
    "this that very not so really too charged twice invoice refund parcel arrived courier app crashes error "
    "login password account email delete my i you we and or of to in on for with"
).split()


def pytest_configure(config) -> None:
    """Under pytest-xdist (`make test` runs `-n auto`) the workers share the cores: each worker's torch gets
    cores / workers intra-op threads (onnxruntime follows torch's count), so that two workers' threads do not
    spin-wait on each other (see `single_torch_thread`)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with mean pooling, saved as a sentence-transformers directory (built once)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny_model")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(TINY_WORDS))]
    # Built from a tokenizers object: transformers 5 ignores a bare vocab_file for BertTokenizerFast.
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    hf_dir = root / "hf"
    BertTokenizerFast(tokenizer_object=tok, model_max_length=64).save_pretrained(hf_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf_dir)
    st_dir = root / "st"
    SentenceTransformer(str(hf_dir), device="cpu").save(str(st_dir))  # plain HF dir: ST adds mean pooling
    return str(st_dir)


@pytest.fixture
def tiny_data() -> dict[str, list]:
    """16 short sentiment texts, 8 per class, labels 0/1."""
    pos = ["good movie", "great film", "nice plot", "i love it", "very good actor", "so happy", "fine film", "great"]
    neg = ["bad movie", "awful film", "poor plot", "i hate it", "very bad actor", "so sad", "terrible film", "awful"]
    return {"text": pos + neg, "label": [1] * 8 + [0] * 8}


@pytest.fixture
def tiny_args():
    from setfit_core import TrainingArguments

    return TrainingArguments(num_iterations=2, show_progress_bar=False, seed=0, num_epochs=(1, 2),
                             save_strategy="no")


TINY_SPLITS = {
    "train": {
        "text": ["good movie", "great film", "nice plot", "i love it", "very good actor", "so happy", "fine film",
                 "great", "bad movie", "awful film", "poor plot", "i hate it", "very bad actor", "so sad",
                 "terrible film", "awful"],
        "label": ["positive"] * 8 + ["negative"] * 8,
    },
    "eval": {
        "text": ["good film", "bad film", "great movie", "awful movie", "i love this film", "i hate this movie",
                 "very nice plot", "very poor plot"],
        "label": ["positive", "negative"] * 4,
    },
    "test": {
        "text": ["so good", "so bad", "a great actor", "a terrible actor", "happy", "sad"],
        "label": ["positive", "negative"] * 3,
    },
}


@pytest.fixture
def saved_model(tiny_model_dir, tmp_path) -> str:
    """A saved model with a LogisticRegression head fitted on `TINY_SPLITS`' train split (no training run: fast)."""
    from setfit_core import SetFitModel

    model = SetFitModel.from_pretrained(tiny_model_dir, device="cpu")
    model.fit(TINY_SPLITS["train"]["text"], TINY_SPLITS["train"]["label"], num_epochs=1, show_progress_bar=False)
    model.save_pretrained(str(tmp_path / "model"))
    return str(tmp_path / "model")


def cpu_only(test):
    """Skip `test` on a machine with a GPU, where a model without a `device` loads on the GPU."""
    import torch

    return pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the model loads on the GPU")(test)


@pytest.fixture(scope="session")
def tiny_splits(tmp_path_factory) -> dict[str, str]:
    """Paths of tiny sentiment splits (string labels) as Parquet: {"train": ..., "eval": ..., "test": ...}."""
    import pandas as pd

    root = tmp_path_factory.mktemp("tiny_splits")
    paths = {}
    for name, columns in TINY_SPLITS.items():
        paths[name] = str(root / f"{name}.parquet")
        pd.DataFrame(columns).to_parquet(paths[name], index=False)
    return paths


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """{relative path: (mtime_ns, size, sha256)} of every file under `root`: proof that nothing was touched."""
    from setfit_core.artifacts import sha256_file

    return {
        p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size, sha256_file(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def single_torch_thread():
    """torch on one thread while the fixture is active.

    Tiny-model steps take milliseconds; with two intra-op threads on a 2-core machine that is busy
    with anything else (a Prefect API server, a benchmark) the threads spin-wait on each other and a
    step takes ~100x longer (measured: 6.5 s vs 0.14 s for the tiny pipeline's body stage).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    """XDG_CACHE_HOME under tmp_path: the pipeline's caches (model identity, S3 copies) stay out of ~/.cache."""
    path = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3 API on 127.0.0.1; yields its endpoint URL, found only via AWS_* env vars."""
    s3fs = pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()  # moto 5.x: the port the OS bound for port=0
    except (AttributeError, AssertionError):
        server.stop()
        port = _free_port()  # older moto: pick a port ourselves
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:
        # One INFO line per request from moto's werkzeug would bury real failure output.
        mp.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        # Credentials from ~/.aws or a real token must not leak into tests.
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_root(s3_server: str) -> str:
    """A fresh prefix in the shared bucket, so tests never see each other's stages."""
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


def onednn_log(run, level: int | None = None) -> str:
    """What oneDNN logs while `run()` runs (`level`: a torch.backends.mkldnn.VERBOSE_* value, default VERBOSE_ON).

    oneDNN prints to the process's stdout (fd 1) through C's buffered stdio, which pytest's capsys cannot see.
    """
    import ctypes
    import tempfile

    import torch

    level = torch.backends.mkldnn.VERBOSE_ON if level is None else level
    with tempfile.TemporaryFile(mode="w+") as log:
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(level):
                run()
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        return log.read()

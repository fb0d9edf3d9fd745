"""Shared fixtures: offline settings, a tiny sentence-transformers model, demo and real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub or telemetry endpoint.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """`../shared/data/<name>`, or skip: a user's clone has no shared data (CI does)."""
    path = SHARED_DATA / name
    if not (path / "train.parquet").exists():
        pytest.skip(f"needs the shared dataset {path} (present in CI and developer checkouts, not in a user's clone)")
    return path


def few_shot(train, n: int, seed: int):
    """REFERENCE §3 sampling: per label in ascending order, `sample(n, random_state=seed)`, concatenated."""
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

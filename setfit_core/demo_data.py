"""Built-in demo data: short customer-support messages in four intents, written by this project.

`make demo` trains on it; tests use it where real data is not needed. Each intent has 30 messages
(120 in all) combined from hand-written openings and requests; 10 per intent go to the training
split (few-shot), the rest are held out.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

INTENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "billing": (
        ("I was charged twice", "My invoice looks wrong", "The refund never arrived", "You billed my card again",
         "There is an unknown payment", "My subscription fee went up"),
        ("can you check the charge?", "please send me a corrected invoice.", "I want my money back.",
         "why is the amount so high?", "please cancel the extra payment."),
    ),
    "shipping": (
        ("My parcel has not arrived", "The package shows as delivered but it is not here", "The courier never came",
         "My order is stuck in transit", "The tracking number does not work", "The box arrived damaged"),
        ("where is my delivery?", "can you send it again?", "when will it be shipped?",
         "please contact the courier.", "I need the parcel by Friday."),
    ),
    "technical": (
        ("The app crashes when I open it", "I get an error on the login page", "The website keeps freezing",
         "Sync stopped working after the update", "The export button does nothing", "Notifications never show up"),
        ("how do I fix this bug?", "is the server down?", "can you look at the logs?",
         "it worked yesterday.", "I already reinstalled it."),
    ),
    "account": (
        ("I forgot my password", "I want to change my email address", "Please delete my account",
         "I cannot verify my phone number", "Someone else logged into my profile", "I need to update my username"),
        ("how do I reset it?", "please help me get access again.", "what are the steps?",
         "can you unlock my account?", "I want to keep my data safe."),
    ),
}
PER_INTENT = 30
TRAIN_PER_INTENT = 10


def demo_records(seed: int = 0) -> list[dict[str, str]]:
    """120 `{"text", "label"}` records, deterministic for a seed."""
    rng = random.Random(seed)
    records = []
    for label, (openings, requests) in INTENTS.items():
        combos = [f"{a}, {b}" for a, b in itertools.product(openings, requests)]
        records.extend({"text": text, "label": label} for text in rng.sample(combos, PER_INTENT))
    return records


def demo_splits(seed: int = 0) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, test): the first TRAIN_PER_INTENT messages of each intent train, the rest are held out."""
    train, test = [], []
    for label in INTENTS:
        rows = [r for r in demo_records(seed) if r["label"] == label]
        train.extend(rows[:TRAIN_PER_INTENT])
        test.extend(rows[TRAIN_PER_INTENT:])
    return train, test


def write_demo_data(directory: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write `train.parquet` and `test.parquet` into `directory`; returns their paths."""
    import pandas as pd

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in zip(("train", "test"), demo_splits(seed), strict=True):
        paths[name] = directory / f"{name}.parquet"
        pd.DataFrame(rows).to_parquet(paths[name], index=False)
    return paths

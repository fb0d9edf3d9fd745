"""The frozen-probe baseline: the untouched body with a LogisticRegression head, trained and scored on the
same data as the fine-tuned model.

Its score is what the body knew before phase 1; the model's score minus it is what fine-tuning bought.
A model below it would have done better without phase 1, which a user should hear about plainly: the
`Trainer` (on its eval_dataset) and the pipeline's evaluation stage compare the two and warn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


def probe_predictions(
    encode: Encode, head: Any, train_texts: list[str], train_ids: np.ndarray, splits: Mapping[str, Sequence[str]]
) -> dict[str, np.ndarray]:
    """Class ids the probe predicts for each split: `head` (an unfitted scikit-learn estimator, e.g. a
    LogisticRegression) fitted on `encode(train_texts)`, where `encode` is the untouched body's encoder."""
    head.fit(encode(list(train_texts)), train_ids)
    return {name: np.asarray(head.predict(encode(list(texts)))) for name, texts in splits.items()}


@dataclass(frozen=True)
class ProbeComparison:
    """The model's and the probe's value of one metric (higher is better) on one split."""

    split: str
    metric: str
    model: float
    probe: float

    @property
    def below(self) -> bool:
        return self.model < self.probe

    def message(self) -> str:
        return (
            f"fine-tuning did not help on {self.split}: the model's {self.metric} is {self.model:.4f}, below the "
            f"frozen-probe baseline's {self.probe:.4f} (the untouched body with a LogisticRegression head, same "
            "data). Check the phase-1 settings (body_learning_rate, num_epochs / max_steps, the loss) or try "
            "preset=\"fast\""
        )


def compare(split: str, metric: str | Callable, model_scores: Mapping[str, Any],
            probe_scores: Mapping[str, Any]) -> ProbeComparison | None:
    """The comparison on the metric asked for (a callable metric: the first number it returns); None when
    the scores hold no such number."""
    key = metric if isinstance(metric, str) else next(
        (k for k, v in model_scores.items() if isinstance(v, (int, float))), None)
    if key is None or not isinstance(model_scores.get(key), (int, float)) or \
            not isinstance(probe_scores.get(key), (int, float)):
        return None
    return ProbeComparison(split, key, float(model_scores[key]), float(probe_scores[key]))

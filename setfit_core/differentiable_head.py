"""`SetFitHead`: the differentiable (torch) classification head, one Linear layer as in setfit."""

from __future__ import annotations

import torch
from torch import nn


def _init_linear(linear: nn.Linear) -> None:
    # setfit's initialisation: Xavier-uniform weights, biases at 0.01.
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.constant_(linear.bias, 1e-2)


class _LazyLinear(nn.LazyLinear):
    """`nn.LazyLinear` that, once the first input fixes its width, initialises as setfit's head does
    (torch's LazyLinear would use Kaiming); it then turns into a plain `nn.Linear`."""

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            _init_linear(self)


class SetFitHead(nn.Module):
    """Linear layer over sentence embeddings; softmax (or sigmoid for multi-target) on top.

    `in_features=None` (setfit's default) leaves the width to the first embeddings the head sees
    (`nn.LazyLinear`). `out_features` must equal the number of classes (labels for multi-target).
    setfit silently turns `out_features=1` into 2; here it is an error like any other mismatch, raised
    before training. The arguments are setfit 1.2.0's, in its order.
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int = 2,
        temperature: float = 1.0,
        eps: float = 1e-5,
        bias: bool = True,
        device: str | torch.device | None = None,
        multitarget: bool = False,
    ) -> None:
        super().__init__()
        if in_features is not None and (
            not isinstance(in_features, int) or isinstance(in_features, bool) or in_features < 1
        ):
            raise ValueError(f"'in_features' must be None (set by the first input) or a positive int; got "
                             f"{in_features!r}")
        if not isinstance(out_features, int) or isinstance(out_features, bool) or out_features < 2:
            raise ValueError(
                f"'out_features' must be an int >= 2 (the number of classes; binary is 2); got {out_features!r}"
            )
        _check_temperature(temperature)
        self.out_features = out_features
        self.temperature = float(temperature)
        self.eps = float(eps)
        self.bias = bias
        self.multitarget = multitarget
        if in_features is None:
            self.linear: nn.Linear = _LazyLinear(out_features, bias=bias)
        else:
            self.linear = nn.Linear(in_features, out_features, bias=bias)
            _init_linear(self.linear)
        if device is not None:
            self.to(device)

    @property
    def in_features(self) -> int | None:
        """The embedding width; None until a lazy head has seen its first input."""
        return None if isinstance(self.linear, nn.LazyLinear) else self.linear.in_features

    def forward(
        self, features: torch.Tensor | dict[str, torch.Tensor], temperature: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | dict[str, torch.Tensor]:
        """`(logits, probs)` for embeddings; for a sentence-transformers output dict, the dict with "logits" and
        "probs" added (as setfit). `temperature` overrides the head's own for this call."""
        if temperature is not None:
            _check_temperature(temperature)
        temperature = temperature if temperature is not None else self.temperature
        is_dict = isinstance(features, dict)
        if is_dict and "sentence_embedding" not in features:
            raise ValueError(f"SetFitHead takes embeddings or a dict with 'sentence_embedding'; got keys "
                             f"{sorted(features)}")
        x = features["sentence_embedding"] if is_dict else features
        logits = self.linear(x) / (temperature + self.eps)
        probs = torch.sigmoid(logits) if self.multitarget else torch.softmax(logits, dim=-1)
        if is_dict:
            features.update(logits=logits, probs=probs)
            return features
        return logits, probs

    def build(self, in_features: int) -> SetFitHead:
        """Fix a lazy head's width now (a no-op otherwise), so an optimizer can be built over its parameters."""
        if self.in_features is None:
            with torch.no_grad():
                self.linear(torch.zeros(1, in_features, device=self.linear.weight.device))
        if self.in_features != in_features:
            raise ValueError(f"the differentiable head takes {self.in_features}-wide embeddings but the body gives "
                             f"{in_features}; build it with in_features={in_features} (or None)")
        return self

    @torch.no_grad()
    def predict_proba(self, embeddings: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        probs = self(embeddings.to(self.linear.weight.dtype))[1]
        self.train(was_training)
        return probs

    def predict(self, embeddings: torch.Tensor) -> torch.Tensor:
        probs = self.predict_proba(embeddings)
        if self.multitarget:
            return (probs >= 0.5).long()
        return probs.argmax(dim=-1)

    def get_loss_fn(self) -> nn.Module:
        return nn.BCEWithLogitsLoss() if self.multitarget else nn.CrossEntropyLoss()

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    def get_config_dict(self) -> dict:
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "temperature": self.temperature,
            "eps": self.eps,
            "bias": self.bias,
            "multitarget": self.multitarget,
        }

    def __repr__(self) -> str:
        return f"SetFitHead({self.get_config_dict()})"


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"'temperature' must be a number > 0; got {temperature!r}")

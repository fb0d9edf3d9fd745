"""`SetFitHead`: the differentiable (torch) classification head, one Linear layer as in setfit."""

from __future__ import annotations

import torch
from torch import nn


class SetFitHead(nn.Module):
    """Linear layer over sentence embeddings; softmax (or sigmoid for multi-target) on top.

    `out_features` must equal the number of classes (labels for multi-target). setfit silently turns
    `out_features=1` into 2; here it is an error like any other mismatch, raised before training.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 2,
        temperature: float = 1.0,
        eps: float = 1e-5,
        bias: bool = True,
        multitarget: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(out_features, int) or isinstance(out_features, bool) or out_features < 2:
            raise ValueError(
                f"'out_features' must be an int >= 2 (the number of classes; binary is 2); got {out_features!r}"
            )
        if not temperature > 0:
            raise ValueError(f"'temperature' must be > 0; got {temperature!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.temperature = float(temperature)
        self.eps = float(eps)
        self.bias = bias
        self.multitarget = multitarget
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        nn.init.xavier_uniform_(self.linear.weight)
        if bias:
            nn.init.constant_(self.linear.bias, 1e-2)
        if device is not None:
            self.to(device)

    def forward(self, features: torch.Tensor | dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(logits, probs)`; accepts embeddings or a sentence-transformers output dict."""
        x = features["sentence_embedding"] if isinstance(features, dict) else features
        logits = self.linear(x) / (self.temperature + self.eps)
        probs = torch.sigmoid(logits) if self.multitarget else torch.softmax(logits, dim=-1)
        return logits, probs

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

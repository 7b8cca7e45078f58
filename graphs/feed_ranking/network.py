"""The ranking network: a small MLP scoring one (member, candidate) pair from crossed features."""

from __future__ import annotations

import torch
from torch import nn


class RankerNet(nn.Module):
    """``inputs`` features per pair -> one engagement logit."""

    def __init__(self, inputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``(..., inputs)`` pairs, shape ``(...)``."""
        return self.layers(x).squeeze(-1)

"""The digits classifier architecture; the registry stores only its weights and config."""

from __future__ import annotations

import torch
from torch import nn


class DigitsNet(nn.Module):
    """A small MLP over 8x8 digit images (64 pixels scaled to 0..1) -> 10 logits."""

    def __init__(self, hidden: int = 128, classes: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of flattened images."""
        return self.layers(x)

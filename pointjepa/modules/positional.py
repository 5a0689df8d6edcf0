"""Positional encoding of token centers."""

from torch import nn


def positional_mlp(dim: int, hidden: int = 128) -> nn.Sequential:
    """MLP Linear(3, hidden)-GELU-Linear(hidden, dim): centers (..., 3) -> embeddings (..., dim)."""
    return nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, dim))

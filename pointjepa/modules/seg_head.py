"""Part segmentation heads: the one-hot category embedding and the per-point classifier.

Both are ``nn.Sequential`` so that parameter names (``label_embedding.{0,1}``, ``seg_head.{0,1,4,5,7}``)
match the original Point-JEPA / Point2Vec checkpoints.
"""

from __future__ import annotations

from torch import nn


def category_embedding(num_categories: int, dim: int = 64) -> nn.Sequential:
    """one-hot (B, K) -> (B, dim): Linear (no bias) - BatchNorm - LeakyReLU(0.2)."""
    return nn.Sequential(nn.Linear(num_categories, dim, bias=False), nn.BatchNorm1d(dim), nn.LeakyReLU(0.2))


def segmentation_head(in_channels: int, hidden_dim: int, dropout: float, num_parts: int) -> nn.Sequential:
    """Per-point features (B, in_channels, N) -> part logits (B, num_parts, N).

    1x1 convs ``in_channels -> hidden_dim -> hidden_dim // 2 -> num_parts`` with BatchNorm and ReLU,
    dropout after the first layer.
    """
    if hidden_dim < 2:
        raise ValueError(f"seg_head_dim: expected at least 2, got {hidden_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"seg_head_dropout: expected a probability in [0, 1), got {dropout}")
    return nn.Sequential(
        nn.Conv1d(in_channels, hidden_dim, 1, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Conv1d(hidden_dim, hidden_dim // 2, 1, bias=False),
        nn.BatchNorm1d(hidden_dim // 2),
        nn.ReLU(),
        nn.Conv1d(hidden_dim // 2, num_parts, 1),
    )

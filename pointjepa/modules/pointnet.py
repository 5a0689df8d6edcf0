"""Mini-PointNet patch embeddings: a point group in, one token out."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn


def _pointnet_forward(first_conv: nn.Module, second_conv: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """points (G, K, 3) -> features (G, C): per-point MLP, global max concatenated back, MLP, max."""
    feature = first_conv(points.transpose(2, 1))  # (G, C1, K)
    feature_global = feature.max(dim=2, keepdim=True).values  # (G, C1, 1)
    feature = torch.cat([feature_global.expand(-1, -1, feature.shape[2]), feature], dim=1)  # (G, 2*C1, K)
    return second_conv(feature).max(dim=2).values  # (G, C)


class PointNetSmall(nn.Module):
    """Point2Vec's mini-PointNet: 3 -> 128 -> 256, global concat 512 -> 512 -> ``feature_dim``.

    Args:
        channels: input channels per point (3 for xyz).
        feature_dim: token width.
    """

    def __init__(self, channels: int, feature_dim: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(channels, 128, 1, bias=False),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Conv1d(128, 256, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1, bias=False),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, feature_dim, 1),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (G, K, channels) -> (G, feature_dim)."""
        return _pointnet_forward(self.first_conv, self.second_conv, points)


class PointNetLarge(nn.Module):
    """PointGPT's larger mini-PointNet: 3 -> 256 -> 512 -> 1024, global concat 2048 -> 2048 -> ``feature_dim``.

    Args:
        channels: input channels per point (3 for xyz).
        feature_dim: token width.
    """

    def __init__(self, channels: int, feature_dim: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(channels, 256, 1),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Conv1d(256, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, 1024, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2048, 2048, 1),
            nn.BatchNorm1d(2048),
            nn.ReLU(inplace=True),
            nn.Conv1d(2048, feature_dim, 1),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (G, K, channels) -> (G, feature_dim)."""
        return _pointnet_forward(self.first_conv, self.second_conv, points)


class PointNetEncoder(nn.Module):
    """Picks the small or large mini-PointNet; kept as a wrapper so parameters live under ``encoder.*``.

    Args:
        channels: input channels per point.
        feature_dim: token width.
        name: ``small`` or ``large``.
    """

    def __init__(self, channels: int, feature_dim: int, name: Literal["small", "large"] = "small") -> None:
        super().__init__()
        if name == "small":
            self.encoder: nn.Module = PointNetSmall(channels, feature_dim)
        elif name == "large":
            self.encoder = PointNetLarge(channels, feature_dim)
        else:
            raise ValueError(f"PointNet encoder name: expected one of ['small', 'large'], got {name!r}")

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points (G, K, channels) -> (G, feature_dim)."""
        return self.encoder(points)

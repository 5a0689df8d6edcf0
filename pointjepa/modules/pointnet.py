"""Mini-PointNet patch embeddings: a point group in, one token out."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def _pointwise(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run ``Conv1d(kernel 1)`` / batch-norm / activation ``layers`` on channels-last rows: (M, C_in) -> (M, C_out).

    A kernel-1 convolution is a matrix product with its (C_out, C_in, 1) weight; on rows it runs as
    one GEMM instead of a convolution over (G, C, K). Batch norms take (M, C) with the same statistics.
    """
    for layer in layers:
        if isinstance(layer, nn.Conv1d):
            x = F.linear(x, layer.weight.squeeze(-1), layer.bias)
        else:
            x = layer(x)
    return x


def _pointnet_forward(first_conv: nn.Sequential, second_conv: nn.Sequential, points: torch.Tensor) -> torch.Tensor:
    """points (G, K, 3) -> features (G, C): per-point MLP, global max concatenated back, MLP, max.

    Two rewrites of the same sums: the first layer of ``second_conv`` sees ``[global; local]``, so
    its weight is split and the global half is applied once per group and broadcast over the K
    points (half the multiply-adds); the bias of the last layer is added after the max over the
    group (``max(a + b) == max(a) + b``), on G rows instead of G*K.
    """
    G, K, _ = points.shape
    feature = _pointwise(first_conv, points.reshape(G * K, -1)).view(G, K, -1)  # (G, K, C1)
    feature_global = feature.max(dim=1).values  # (G, C1)
    fuse, body, last = second_conv[0], second_conv[1:-1], second_conv[-1]
    if not (isinstance(fuse, nn.Conv1d) and isinstance(last, nn.Conv1d)):
        raise TypeError("second_conv: expected Conv1d layers first and last")
    weight = fuse.weight.squeeze(-1)  # (C2, 2*C1): global columns first
    width = feature.shape[-1]
    hidden = F.linear(feature, weight[:, width:]) + F.linear(feature_global, weight[:, :width], fuse.bias).unsqueeze(1)
    hidden = _pointwise(body, hidden.view(G * K, -1))
    tokens = F.linear(hidden, last.weight.squeeze(-1)).view(G, K, -1).max(dim=1).values  # (G, C)
    return tokens if last.bias is None else tokens + last.bias.to(tokens.dtype)  # autocast: keep the GEMM's dtype


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

"""Feature propagation (PointNet++ upsampling): token features at the centers -> features at every point."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pointjepa.ops import gather_points, knn


def interpolate_features(
    points: torch.Tensor, centers: torch.Tensor, features: torch.Tensor, k: int = 3
) -> torch.Tensor:
    """Inverse squared-distance weighted mean of the features of each point's ``k`` nearest centers.

    Weights are ``1 / (d² + eps)`` normalised to sum 1 (PointNet++); with fewer than ``k`` centers
    all of them are used.

    Args:
        points: (B, N, 3) where features are wanted.
        centers: (B, S, 3) where features are known.
        features: (B, S, C) features of the centers.
        k: neighbours per point.

    Returns:
        (B, N, C) interpolated features.
    """
    if centers.shape[:2] != features.shape[:2]:
        raise ValueError(
            f"centers {tuple(centers.shape)} and features {tuple(features.shape)}: expected (B, S, ...) both"
        )
    sqdist, idx = knn(points, centers, min(k, centers.shape[1]))  # (B, N, k)
    sqdist = sqdist.float().clamp_min(0)
    weight = 1.0 / (sqdist + torch.finfo(sqdist.dtype).eps)
    weight = weight / weight.sum(dim=-1, keepdim=True)
    neighbours = gather_points(features, idx)  # (B, N, k, C)
    return (neighbours * weight.unsqueeze(-1).to(neighbours.dtype)).sum(dim=2)


class FeaturePropagation(nn.Module):
    """Interpolate center features to all points, concatenate per-point features, then a shared MLP
    of 1x1 Conv1d (no bias) - BatchNorm - ReLU layers.

    Parameter names (``mlp_convs.<i>``, ``mlp_bns.<i>``) are those of the original ``upsampling`` module.

    Args:
        in_channel: per-point feature width + center feature width (the first conv's input).
        mlp: output widths of the MLP layers.
        k: nearest centers per point.
    """

    def __init__(self, in_channel: int, mlp: Sequence[int], k: int = 3) -> None:
        super().__init__()
        if not mlp:
            raise ValueError("mlp: expected at least one layer width")
        self.k = k
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for width in mlp:
            self.mlp_convs.append(nn.Conv1d(last, width, 1, bias=False))
            self.mlp_bns.append(nn.BatchNorm1d(width))
            last = width

    def forward(
        self,
        points: torch.Tensor,
        centers: torch.Tensor,
        point_features: torch.Tensor | None,
        center_features: torch.Tensor,
    ) -> torch.Tensor:
        """points (B, N, 3), centers (B, S, 3), point_features (B, N, D) or None, center_features (B, S, C)
        -> (B, N, mlp[-1])."""
        x = interpolate_features(points, centers, center_features, self.k)
        if point_features is not None:
            x = torch.cat([point_features.to(x.dtype), x], dim=-1)
        x = x.transpose(1, 2)  # (B, D + C, N)
        for conv, bn in zip(self.mlp_convs, self.mlp_bns):
            x = torch.relu(bn(conv(x)))
        return x.transpose(1, 2)

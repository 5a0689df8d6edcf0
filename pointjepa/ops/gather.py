"""Gather per-sample points (or features) by index."""

import torch
from torch import Tensor


def gather_points(points: Tensor, idx: Tensor) -> Tensor:
    """
    Pick rows of each sample by index (differentiable with respect to `points`).

    Args:
        points: (B, N, C) points or per-point features.
        idx: (B, *S) int64 indices into N.

    Returns:
        (B, *S, C): `out[b, s] = points[b, idx[b, s]]`.
    """
    if points.dim() != 3:
        raise ValueError(f"points: expected (B, N, C), got {tuple(points.shape)}")
    if idx.dim() < 1 or idx.shape[0] != points.shape[0]:
        raise ValueError(f"idx: expected (B, ...) with B={points.shape[0]}, got {tuple(idx.shape)}")
    if idx.dtype != torch.int64:
        raise ValueError(f"idx: expected int64, got {idx.dtype}")
    batch, channels = points.shape[0], points.shape[-1]
    flat = idx.reshape(batch, -1, 1).expand(-1, -1, channels)
    return points.gather(1, flat).reshape(*idx.shape, channels)

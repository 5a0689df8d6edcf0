"""Ball query, batched, pure torch with an optional pytorch3d fast path."""

import torch
from torch import Tensor

from ._backend import (
    Backend,
    check_count,
    check_query,
    compute_dtype,
    pytorch3d_ops,
    query_chunks,
    square_distances,
)


@torch.no_grad()
def ball_query(query: Tensor, points: Tensor, k: int, radius: float, backend: Backend = "auto") -> Tensor:
    """
    The first k points, in point order, strictly within `radius` of each query point (as
    `pytorch3d.ops.ball_query`). Slots left empty are filled with the first neighbour found,
    or, for a query with no point within `radius`, with its nearest point.

    The pytorch3d backend computes in float32; the torch path in float32, or float64 for
    float64 input.

    Args:
        query: (B, M, 3) query points, any floating dtype.
        points: (B, N, 3) points to search, any floating dtype.
        k: neighbours per query, 1 <= k <= N.
        radius: ball radius, > 0.
        backend: "auto" (pytorch3d when importable), "torch" or "pytorch3d".

    Returns:
        idx: (B, M, k) int64 indices into N, ascending until the filled slots.
    """
    check_query(query, points)
    check_count("ball_query", "k", k, points.shape[1])
    if not radius > 0:
        raise ValueError(f"ball_query: radius must be > 0, got {radius}")
    p3d = pytorch3d_ops(backend)
    if p3d is not None:
        query, points = query.float(), points.float()
        idx = p3d.ball_query(query, points, K=k, radius=radius, return_nn=False)[1]
        nearest = p3d.knn_points(query, points, K=1, return_sorted=False)[1]
        return _fill(idx, idx < 0, nearest)
    dtype = compute_dtype(query, points)
    query, points = query.to(dtype), points.to(dtype)
    num_points = points.shape[1]
    arange = torch.arange(num_points, device=points.device)
    found = []
    for chunk in query_chunks(query, points):
        dists = square_distances(chunk, points)  # (B, m, N)
        # In-radius points keep their index, others get N; the k smallest are the first k.
        keys = torch.where(dists < radius * radius, arange, num_points)
        idx = keys.topk(k, dim=-1, largest=False, sorted=True).values
        found.append(_fill(idx, idx == num_points, dists.argmin(-1, keepdim=True)))
    return torch.cat(found, dim=1)


def _fill(idx: Tensor, missing: Tensor, nearest: Tensor) -> Tensor:
    """Fill `missing` slots of (B, M, k) `idx` with its first slot, or `nearest` (B, M, 1)."""
    first = torch.where(missing[..., :1], nearest, idx[..., :1])
    return torch.where(missing, first, idx)

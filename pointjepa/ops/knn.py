"""k nearest neighbours, batched, pure torch with an optional pytorch3d fast path."""

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


def knn(query: Tensor, points: Tensor, k: int, backend: Backend = "auto") -> tuple[Tensor, Tensor]:
    """
    The k nearest points of each query point, nearest first.

    The pytorch3d backend (`knn_points`) computes in float32; the torch path in float32, or
    float64 for float64 input. Equidistant neighbours may come in either order.

    Args:
        query: (B, M, 3) query points, any floating dtype.
        points: (B, N, 3) points to search, any floating dtype.
        k: neighbours per query, 1 <= k <= N.
        backend: "auto" (pytorch3d when importable), "torch" or "pytorch3d".

    Returns:
        dists: (B, M, k) squared distances, ascending, in the common dtype of the inputs.
        idx: (B, M, k) int64 indices into N.
    """
    check_query(query, points)
    check_count("knn", "k", k, points.shape[1])
    out_dtype = torch.promote_types(query.dtype, points.dtype)
    p3d = pytorch3d_ops(backend)
    if p3d is None:
        dtype = compute_dtype(query, points)
        query, points = query.to(dtype), points.to(dtype)
        found = [
            square_distances(chunk, points).topk(k, dim=-1, largest=False, sorted=True)
            for chunk in query_chunks(query, points)
        ]
        dists = torch.cat([f.values for f in found], dim=1)
        idx = torch.cat([f.indices for f in found], dim=1)
    else:
        dists, idx, _ = p3d.knn_points(query.float(), points.float(), K=k, return_sorted=True)
    return dists.to(out_dtype), idx

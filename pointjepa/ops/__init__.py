"""Batched point-cloud ops: farthest point sampling, kNN, ball query, gather.

Pure torch on any device; `pytorch3d.ops` is used as a fast path when importable
(`HAS_PYTORCH3D`), or per call with `backend=`.
"""

from ._backend import HAS_PYTORCH3D, Backend
from .ball_query import ball_query
from .fps import farthest_point_sample
from .gather import gather_points
from .knn import knn

__all__ = [
    "HAS_PYTORCH3D",
    "Backend",
    "ball_query",
    "farthest_point_sample",
    "gather_points",
    "knn",
]

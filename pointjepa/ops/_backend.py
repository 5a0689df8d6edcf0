"""Backend choice, input checks and distance helpers shared by the point-cloud ops.

pytorch3d is an optional fast path: whether `pytorch3d.ops` imports is decided once, here, at
import time (as timm's `fused_attn`); each op can still be forced onto one backend per call.
"""

from collections.abc import Iterator
from types import ModuleType
from typing import Literal, get_args

import torch
from torch import Tensor

Backend = Literal["auto", "torch", "pytorch3d"]

try:
    from pytorch3d import ops as _pytorch3d_ops
except (ImportError, OSError):  # not installed, or built against another torch
    _pytorch3d_ops = None

HAS_PYTORCH3D: bool = _pytorch3d_ops is not None

_INSTALL_HINT = (
    "backend='pytorch3d' needs pytorch3d, which cannot be imported here. Install it "
    "(https://github.com/facebookresearch/pytorch3d/blob/main/INSTALL.md, e.g. "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/pytorch3d.git') "
    "or use backend='auto' or 'torch'."
)


def pytorch3d_ops(backend: Backend) -> ModuleType | None:
    """Resolve `backend`: `pytorch3d.ops` to call, or None for the pure-torch path."""
    if backend not in get_args(Backend):
        raise ValueError(f"backend: expected one of {get_args(Backend)}, got {backend!r}")
    if backend == "torch":
        return None
    if backend == "pytorch3d" and _pytorch3d_ops is None:
        raise RuntimeError(_INSTALL_HINT)
    return _pytorch3d_ops


def check_cloud(name: str, x: Tensor, shape: str = "(B, N, 3)") -> None:
    """Raise a ValueError naming `name` unless `x` is a floating (B, *, 3) tensor."""
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected {shape}, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {x.dtype}")


def check_query(query: Tensor, points: Tensor) -> None:
    """Check a (B, M, 3) query against (B, N, 3) points."""
    check_cloud("query", query, "(B, M, 3)")
    check_cloud("points", points)
    if query.shape[0] != points.shape[0]:
        raise ValueError(f"query and points: batch sizes differ ({query.shape[0]} vs {points.shape[0]})")


def check_count(op: str, name: str, value: int, num_points: int) -> None:
    """Raise unless 1 <= value <= num_points."""
    if value < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {value}")
    if value > num_points:
        raise ValueError(f"{op}: {name}={value} exceeds the {num_points} points per cloud")


def compute_dtype(*xs: Tensor) -> torch.dtype:
    """The inputs' common dtype, at least float32 (half and bfloat16 are computed in float32)."""
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


# Queries are processed in chunks of at most this many (query, point) pairs, whole batch
# counted, bounding the (B, M, N, 3) difference tensor (about 200 MB in float32 at 2**24 pairs).
MAX_PAIRS_PER_CHUNK = 1 << 24


def query_chunks(query: Tensor, points: Tensor) -> Iterator[Tensor]:
    """Split (B, M, 3) queries along M into chunks of bounded size against (B, N, 3) points."""
    pairs_per_query = max(1, query.shape[0] * points.shape[1])
    yield from query.split(max(1, MAX_PAIRS_PER_CHUNK // pairs_per_query), dim=1)


def square_distances(query: Tensor, points: Tensor) -> Tensor:
    """(B, M, 3), (B, N, 3) -> (B, M, N) squared distances.

    Summed from coordinate differences as pytorch3d does, not by the cancellation-prone
    |q|^2 - 2 q.p + |p|^2 expansion: ``(dx*dx + dy*dy) + dz*dz``, one (B, M, N) plane per axis
    rather than a (B, M, N, 3) tensor reduced over its last axis (same values, far fewer passes).
    """
    q, p = query.unsqueeze(2), points.unsqueeze(1)  # (B, M, 1, 3), (B, 1, N, 3)
    dist = (q[..., 0] - p[..., 0]).square_()
    dist.add_((q[..., 1] - p[..., 1]).square_())
    return dist.add_((q[..., 2] - p[..., 2]).square_())

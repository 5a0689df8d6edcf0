"""Farthest point sampling (FPS), batched, pure torch with an optional pytorch3d fast path."""

from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor

from ._backend import Backend, check_cloud, check_count, compute_dtype, pytorch3d_ops
from .gather import gather_points

_fps_triton: Callable[[Tensor, int, Tensor | None], Tensor] | None
try:  # Triton kernel for CUDA clouds; "auto" uses it when pytorch3d is absent
    from .fps_triton import MAX_POINTS as _TRITON_MAX_POINTS
    from .fps_triton import fps_triton as _fps_triton
except (ImportError, OSError):  # Triton not installed, or unusable here
    _fps_triton = None


def farthest_point_sample(
    points: Tensor,
    num_samples: int,
    random_start: bool = False,
    start_idx: Tensor | None = None,
    generator: torch.Generator | None = None,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """
    Greedy farthest point sampling [1]: start at one point, then repeatedly take the point
    whose distance to the chosen set is largest (ties -> lowest index, as `argmax`).

    Both backends give the same centers for the same start. pytorch3d has no start-index
    argument, so for a start other than point 0 each cloud is rolled to put its start first
    and the indices are rolled back; only exact distance ties can then resolve differently
    (to the first tied point at or after the start, cyclically). pytorch3d computes in
    float32; the torch path in float32, or float64 for float64 input.

    [1] Qi et al., "PointNet++: Deep Hierarchical Feature Learning on Point Sets in a
        Metric Space", NeurIPS 2017.

    Args:
        points: (B, N, 3) point clouds, any floating dtype.
        num_samples: K, the number of centers per cloud, 1 <= K <= N.
        random_start: start at a random point per cloud (drawn with `generator`, which
            must live on `points.device`), else at `start_idx`, else at point 0.
        start_idx: (B,) int64 start index per cloud; exclusive with `random_start`.
        generator: random generator for `random_start`.
        backend: "auto" (pytorch3d when importable, else the Triton kernel of
            `fps_triton` for CUDA clouds of float32 or lower precision when Triton imports,
            else torch), "torch" or "pytorch3d".

    Returns:
        centers: (B, K, 3) sampled points, in the dtype of `points`.
        idx: (B, K) int64 indices of the centers; `idx[:, 0]` is the start.
    """
    check_cloud("points", points)
    batch, num_points, _ = points.shape
    check_count("farthest_point_sample", "num_samples", num_samples, num_points)
    if random_start and start_idx is not None:
        raise ValueError("farthest_point_sample: pass random_start or start_idx, not both")
    if start_idx is not None and (start_idx.shape != (batch,) or start_idx.dtype != torch.int64):
        raise ValueError(
            f"start_idx: expected (B,) int64 with B={batch}, got {tuple(start_idx.shape)} {start_idx.dtype}"
        )
    if random_start:
        start_idx = torch.randint(num_points, (batch,), generator=generator, device=points.device)
    p3d = pytorch3d_ops(backend)
    if p3d is not None:
        idx = _fps_pytorch3d(p3d, points, num_samples, start_idx)
    elif backend == "auto" and _fps_triton is not None and _triton_applies(points):
        idx = _fps_triton(points, num_samples, start_idx)
    else:
        idx = _fps_torch(points, num_samples, start_idx)
    return gather_points(points, idx), idx


def _triton_applies(points: Tensor) -> bool:
    """Whether the Triton kernel computes exactly what `_fps_torch` would (float32 on CUDA)."""
    return (
        _fps_triton is not None
        and points.is_cuda
        and compute_dtype(points) == torch.float32
        and points.shape[1] <= _TRITON_MAX_POINTS
    )


@torch.no_grad()
def _fps_torch(points: Tensor, num_samples: int, start_idx: Tensor | None) -> Tensor:
    """(B, N, 3) -> (B, K) indices: a few tensor ops per chosen center, no loop over points.

    Each pick measures ``(dx*dx + dy*dy) + dz*dz`` from the last center to every point, keeps the
    running minimum and takes its first argmax. On the CPU the passes over memory are what costs
    (`_fps_loop_planes`); elsewhere the kernel launches are (`_fps_loop_few_kernels`). Both give
    the same indices.
    """
    pts = points.to(compute_dtype(points))
    if start_idx is None:
        start_idx = torch.zeros(pts.shape[0], dtype=torch.int64, device=pts.device)
    loop = _fps_loop_planes if pts.device.type == "cpu" else _fps_loop_few_kernels
    return loop(pts, num_samples, start_idx)


def _fps_loop_few_kernels(pts: Tensor, num_samples: int, last: Tensor) -> Tensor:
    """Six kernels per pick on (B, N, 3): gather the center, difference, square, sum, minimum, argmax."""
    batch, num_points, _ = pts.shape
    min_dist = pts.new_full((batch, num_points), float("inf"))
    chosen = [last]
    for _ in range(num_samples - 1):
        center = pts.gather(1, last.view(batch, 1, 1).expand(batch, 1, 3))
        min_dist = torch.minimum(min_dist, (pts - center).square().sum(-1))
        last = min_dist.argmax(-1)
        chosen.append(last)
    return torch.stack(chosen, 1)


# The running minimum is split into blocks of this many points for the argmax (see `_first_argmax`).
_ARGMAX_BLOCK = 128


def _first_argmax(blocks: Tensor) -> Tensor:
    """(B, nb, b) -> (B,) flat index of the first maximum, as ``blocks.view(B, -1).argmax(-1)``.

    The first block holding the maximum, then the first maximum in it: the same index (NaN counts
    as the maximum in both), from a vectorised ``amax`` over all values and two argmax calls over
    nb and b values, instead of one argmax, a scalar loop on the CPU, over all of them.
    """
    batch, _, size = blocks.shape
    block = blocks.amax(-1).argmax(-1)  # (B,)
    inner = blocks.gather(1, block.view(batch, 1, 1).expand(batch, 1, size)).view(batch, size)
    return block * size + inner.argmax(-1)


def _fps_loop_planes(pts: Tensor, num_samples: int, last: Tensor) -> Tensor:
    """Few passes over memory per pick: the coordinates as three contiguous (B, N) planes, each
    distance summed in place into preallocated buffers (no reduction over a size-3 axis), and the
    running minimum padded with -inf to whole blocks for `_first_argmax`."""
    batch, num_points, _ = pts.shape
    planes = pts.permute(2, 0, 1).contiguous()  # (3, B, N)
    flat = planes.view(3, batch * num_points)
    offsets = torch.arange(batch, device=pts.device) * num_points
    num_blocks = -(-num_points // _ARGMAX_BLOCK)
    padded = pts.new_full((batch, num_blocks * _ARGMAX_BLOCK), float("-inf"))
    min_dist = padded[:, :num_points]
    min_dist.fill_(float("inf"))
    blocks = padded.view(batch, num_blocks, _ARGMAX_BLOCK)
    dist, term = torch.empty_like(planes[0]), torch.empty_like(planes[0])
    chosen = [last]
    for _ in range(num_samples - 1):
        center = flat[:, offsets + last].unsqueeze(-1)  # (3, B, 1)
        torch.sub(planes[0], center[0], out=dist).mul_(dist)
        for axis in (1, 2):
            torch.sub(planes[axis], center[axis], out=term).mul_(term)
            dist.add_(term)
        torch.minimum(min_dist, dist, out=min_dist)
        last = _first_argmax(blocks)
        chosen.append(last)
    return torch.stack(chosen, 1)


@torch.no_grad()
def _fps_pytorch3d(p3d: ModuleType, points: Tensor, num_samples: int, start_idx: Tensor | None) -> Tensor:
    """Same as `_fps_torch` through `pytorch3d.ops.sample_farthest_points` (starts at 0)."""
    pts = points.float()
    if start_idx is None:
        return p3d.sample_farthest_points(pts, K=num_samples)[1]
    num_points = pts.shape[1]
    arange = torch.arange(num_points, device=pts.device)
    order = (arange + start_idx[:, None]) % num_points  # cloud rolled so its start is point 0
    idx = p3d.sample_farthest_points(gather_points(pts, order), K=num_samples)[1]
    return (idx + start_idx[:, None]) % num_points

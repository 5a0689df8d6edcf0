"""Farthest point sampling as one Triton kernel: one program per cloud, the loop over picks on chip.

The pure-torch path launches a handful of kernels per pick (1023 picks x ~4 kernels to subsample
8192 points to 1024); here each cloud's coordinates and running min-distance stay in registers
and the K picks run inside one kernel. The arithmetic is the torch path's, in the same order
(``(dx*dx + dy*dy) + dz*dz`` in float32, no fused multiply-add, ``argmax`` ties -> lowest index),
so both give the same indices.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

# Clouds larger than this stay on the torch path: the whole cloud is held on chip by one program.
MAX_POINTS = 1 << 15


# Triton ships no type hints, and it reads kernel annotations itself (tl.constexpr): its arguments stay unannotated.
@triton.jit  # type: ignore[untyped-decorator]
def _fps_kernel(points_ptr, start_ptr, idx_ptr, num_points, num_samples, BLOCK_N: tl.constexpr):  # type: ignore[no-untyped-def]
    """points (B, N, 3) float32, start (B,) int64 -> idx (B, K) int64; program b handles cloud b."""
    cloud = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK_N)
    valid = offs < num_points
    base = points_ptr + cloud * num_points * 3
    x = tl.load(base + offs * 3, mask=valid, other=0.0)
    y = tl.load(base + offs * 3 + 1, mask=valid, other=0.0)
    z = tl.load(base + offs * 3 + 2, mask=valid, other=0.0)
    # Padding lanes hold -1, below every distance, so argmax never picks them.
    min_dist = tl.where(valid, float("inf"), -1.0)
    out = idx_ptr + cloud * num_samples
    last = tl.load(start_ptr + cloud)
    tl.store(out, last)
    for i in range(1, num_samples):
        dx = x - tl.load(base + last * 3)
        dy = y - tl.load(base + last * 3 + 1)
        dz = z - tl.load(base + last * 3 + 2)
        min_dist = tl.minimum(min_dist, dx * dx + dy * dy + dz * dz)
        last = tl.argmax(min_dist, axis=0, tie_break_left=True).to(tl.int64)
        tl.store(out + i, last)


def _num_warps(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


@torch.no_grad()
def fps_triton(points: Tensor, num_samples: int, start_idx: Tensor | None) -> Tensor:
    """
    Greedy farthest point sampling on the GPU, same indices as the torch path of
    `farthest_point_sample` (computed in float32).

    Args:
        points: (B, N, 3) clouds, N <= MAX_POINTS, on a device Triton can launch on.
        num_samples: K, 1 <= K <= N (checked by the caller).
        start_idx: (B,) int64 start per cloud, or None for point 0.

    Returns:
        idx: (B, K) int64 indices; `idx[:, 0]` is the start.
    """
    batch, num_points, _ = points.shape
    if num_points > MAX_POINTS:
        raise ValueError(f"fps_triton: clouds of {num_points} points exceed MAX_POINTS={MAX_POINTS}")
    pts = points.float().contiguous()
    if start_idx is None:
        start = torch.zeros(batch, dtype=torch.int64, device=pts.device)
    else:
        start = start_idx.to(device=pts.device, dtype=torch.int64).contiguous()
    idx = torch.empty(batch, num_samples, dtype=torch.int64, device=pts.device)
    block = triton.next_power_of_2(num_points)
    _fps_kernel[(batch,)](
        pts, start, idx, num_points, num_samples, BLOCK_N=block, num_warps=_num_warps(block), enable_fp_fusion=False
    )
    return idx

"""Point sequencer: orders tokens so that neighbours in the sequence are neighbours in space."""

from __future__ import annotations

from typing import Literal, get_args

import torch

SequenceMethod = Literal["iterative_nearest", "iterative_nearest_min_start", "morton"]
SEQUENCE_METHODS: tuple[str, ...] = get_args(SequenceMethod)


def iterative_nearest_order(centers: torch.Tensor, min_start: bool = False) -> torch.Tensor:
    """Greedy nearest-neighbour chain, batched: centers (B, T, 3) -> order (B, T) int64.

    The chain starts at token 0, or with ``min_start`` at the center with the smallest x+y+z,
    and each next token is the nearest one not yet visited (ties -> lowest index).
    """
    B, T, _ = centers.shape
    c = centers.float()
    dist = torch.cdist(c, c)  # (B, T, T)
    if min_start:
        current = c.sum(dim=-1).argmin(dim=1)
    else:
        current = torch.zeros(B, dtype=torch.long, device=centers.device)
    rows = torch.arange(B, device=centers.device)
    visited = torch.zeros(B, T, dtype=torch.bool, device=centers.device)
    order = [current]
    for _ in range(T - 1):
        visited[rows, current] = True
        d = dist[rows, current].masked_fill(visited, float("inf"))  # (B, T)
        current = d.argmin(dim=1)
        order.append(current)
    return torch.stack(order, dim=1)


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between each of the low 16 bits of ``v`` (int64)."""
    v = v & 0xFFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def morton_codes(centers: torch.Tensor) -> torch.Tensor:
    """Z-order codes as PointGPT's (and the original's) ``z_order``: (B, T, 3) -> (B, T) int64.

    Per cloud, each coordinate goes on a 1/256 grid from ``|min - 0.5|`` (``min`` over all three axes),
    reversed and rounded in float32: ``round(2**21 - 256 * (x + |min - 0.5|))``. The low 16 bits of x,
    y, z are interleaved, x lowest: the original's 21-bit interleave keeps only those under numpy 1.x
    (an int32 shift by 32 gives 0); bits 16-20 are the same for all centers of a cloud less than 255
    units wide, so the order there is the full 21-bit z-order.
    """
    c = centers.float()
    offset = (c.amin(dim=(1, 2), keepdim=True) - 0.5).abs()
    grid = torch.round(2**21 - 256 * (c + offset)).long()
    return _spread_bits(grid[..., 0]) | (_spread_bits(grid[..., 1]) << 1) | (_spread_bits(grid[..., 2]) << 2)


def morton_order(centers: torch.Tensor) -> torch.Tensor:
    """Sort by z-order code, ascending (equal codes in index order): centers (B, T, 3) -> order (B, T) int64."""
    return morton_codes(centers).argsort(dim=1, stable=True)


def sequence_order(centers: torch.Tensor, method: SequenceMethod) -> torch.Tensor:
    """centers (B, T, 3) -> token order (B, T) int64 for the named method."""
    if method == "iterative_nearest":
        return iterative_nearest_order(centers, min_start=False)
    if method == "iterative_nearest_min_start":
        return iterative_nearest_order(centers, min_start=True)
    if method == "morton":
        return morton_order(centers)
    raise ValueError(f"token_seq_method: expected one of {list(SEQUENCE_METHODS)}, got {method!r}")


class PointSequencer(torch.nn.Module):
    """Reorders tokens and centers along a spatial sequence.

    Args:
        method: ``iterative_nearest``, ``iterative_nearest_min_start`` or ``morton``.
    """

    def __init__(self, method: SequenceMethod = "iterative_nearest_min_start") -> None:
        super().__init__()
        if method not in SEQUENCE_METHODS:
            raise ValueError(f"token_seq_method: expected one of {list(SEQUENCE_METHODS)}, got {method!r}")
        self.method = method

    def forward(self, tokens: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T, C), centers (B, T, 3) -> both reordered."""
        order = sequence_order(centers, self.method)
        tokens = tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        centers = centers.gather(1, order.unsqueeze(-1).expand(-1, -1, 3))
        return tokens, centers

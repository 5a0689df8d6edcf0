"""Target and context samplers: pure functions of sizes and a generator returning token positions.

Positions index the sequenced tokens and are shared by the whole batch. They are drawn on the
host (tiny tensors) so a training step never waits on the device.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

TargetMethod = Literal["contiguous", "random"]
ContextMethod = Literal["contiguous", "random", "rest"]
TARGET_METHODS: tuple[str, ...] = get_args(TargetMethod)
CONTEXT_METHODS: tuple[str, ...] = get_args(ContextMethod)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def check_ratio_range(ratio: tuple[float, float], option: str) -> tuple[float, float]:
    """Validate a ``(min, max)`` ratio pair in [0, 1]."""
    if len(ratio) != 2 or not 0.0 <= ratio[0] <= ratio[1] <= 1.0:
        raise ValueError(f"{option}: expected [min, max] with 0 <= min <= max <= 1, got {list(ratio)}")
    return float(ratio[0]), float(ratio[1])


def sample_targets(
    num_tokens: int,
    num_targets: int,
    ratio_range: tuple[float, float],
    method: TargetMethod = "contiguous",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-> target positions (M, k) int64, k = max(1, int(r * T)) with r ~ U(ratio_range) once per call.

    ``contiguous``: each block is k consecutive positions from a random start; ``random``: each
    block is a random k-subset (sorted).
    """
    k = max(1, int(_uniform(*ratio_range, generator) * num_tokens))
    if method == "contiguous":
        starts = torch.randint(0, num_tokens - k + 1, (num_targets, 1), generator=generator)
        return starts + torch.arange(k)
    if method == "random":
        perm = torch.rand(num_targets, num_tokens, generator=generator).argsort(dim=1)
        return perm[:, :k].sort(dim=1).values
    raise ValueError(f"target_sample_method: expected one of {list(TARGET_METHODS)}, got {method!r}")


def sample_context(
    num_tokens: int,
    target_positions: torch.Tensor,
    ratio_range: tuple[float, float] | None,
    method: ContextMethod = "contiguous",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-> context positions (n,) int64, never a target position.

    Works on the free positions (covered by no target block), in sequence order. The share
    r ~ U(ratio_range) of them is taken: ``contiguous`` a consecutive run of the free list,
    ``random`` a random subset; ``rest`` takes them all.
    """
    free = torch.ones(num_tokens, dtype=torch.bool)
    free[target_positions.reshape(-1)] = False
    free_positions = free.nonzero().squeeze(1)
    num_free = free_positions.numel()
    if num_free == 0:
        raise ValueError(
            "the target blocks cover every token, so no context is left: lower num_targets_per_sample "
            "or target_sample_ratio"
        )
    if method == "rest":
        return free_positions
    if ratio_range is None:
        raise ValueError(f"context_sample_ratio must be set for context_sample_method={method!r}")
    n = max(1, int(_uniform(*ratio_range, generator) * num_free))
    if method == "contiguous":
        start = int(torch.randint(0, num_free - n + 1, (), generator=generator))
        return free_positions[start : start + n]
    if method == "random":
        pick = torch.randperm(num_free, generator=generator)[:n]
        return free_positions[pick.sort().values]
    raise ValueError(f"context_sample_method: expected one of {list(CONTEXT_METHODS)}, got {method!r}")


def gather_tokens(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (B, T, C), positions (*S) int64 shared by the batch -> (B, *S, C)."""
    return x[:, positions.to(x.device, non_blocking=True)]

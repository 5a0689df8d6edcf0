"""Learning-rate schedule from torch's building blocks."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, SequentialLR


def warmup_cosine_schedule(
    optimizer: Optimizer, warmup_epochs: int, max_epochs: int, warmup_start_lr: float, eta_min: float
) -> LRScheduler:
    """Per-epoch schedule of pl_bolts' ``LinearWarmupCosineAnnealingLR`` (0.7.0, the original's), for every
    warm-up length W; each parameter group goes from ``warmup_start_lr`` (s) to its own base lr (b):

    - epoch 0 runs at s, whatever W;
    - W >= 2: linear from s at epoch 0 to b at epoch W - 1, then cosine from b at epoch W to ``eta_min`` at
      ``max_epochs``;
    - W = 1: s at epoch 0, then that cosine from b at epoch 1;
    - W = 0: a cosine from s at epoch 0 to ``eta_min``: b is never reached (pl_bolts' chained cosine goes on
      from the rate of epoch 0). ``warmup_start_lr`` equal to the learning rate gives a plain cosine.
    """
    if warmup_epochs < 0 or max_epochs < 1:
        raise ValueError(
            f"lr schedule: expected warmup_epochs >= 0 and max_epochs >= 1, got {warmup_epochs}, {max_epochs}"
        )
    base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    if any(lr <= 0 for lr in base_lrs):
        raise ValueError(f"lr schedule: expected positive learning rates, got {base_lrs}")
    if warmup_epochs == 0:
        return LambdaLR(optimizer, [_cosine_factor(warmup_start_lr / lr, eta_min / lr, max_epochs) for lr in base_lrs])
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs), eta_min=eta_min)
    warmup = LambdaLR(optimizer, [_linear_factor(warmup_start_lr / lr, warmup_epochs - 1) for lr in base_lrs])
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])


def _linear_factor(start: float, total: int) -> Callable[[int], float]:
    """Epoch -> lr factor rising linearly from ``start`` at 0 to 1 at ``total`` (``start`` when ``total`` is 0)."""

    def factor(epoch: int) -> float:
        return start + (1.0 - start) * min(epoch, total) / total if total else start

    return factor


def _cosine_factor(start: float, end: float, total: int) -> Callable[[int], float]:
    """Epoch -> lr factor falling as a half cosine from ``start`` at 0 to ``end`` at ``total``."""

    def factor(epoch: int) -> float:
        return end + (start - end) * (1.0 + math.cos(math.pi * epoch / total)) / 2.0

    return factor

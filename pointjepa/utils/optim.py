"""Learning-rate schedule from torch's building blocks."""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler, SequentialLR


def warmup_cosine_schedule(
    optimizer: Optimizer, warmup_epochs: int, max_epochs: int, warmup_start_lr: float, eta_min: float
) -> LRScheduler:
    """Per-epoch schedule: linear from ``warmup_start_lr`` at epoch 0 to the base lr at epoch
    ``warmup_epochs - 1``, then cosine from the base lr at ``warmup_epochs`` to ``eta_min`` at ``max_epochs``.

    This is the schedule of pl_bolts' ``LinearWarmupCosineAnnealingLR`` used by the original: every
    parameter group warms up from ``warmup_start_lr`` to its own base lr.
    """
    if warmup_epochs < 0 or max_epochs < 1:
        raise ValueError(
            f"lr schedule: expected warmup_epochs >= 0 and max_epochs >= 1, got {warmup_epochs}, {max_epochs}"
        )
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs), eta_min=eta_min)
    if warmup_epochs <= 1:
        return cosine
    base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    warmup = LambdaLR(optimizer, [_linear_factor(warmup_start_lr / lr, warmup_epochs - 1) for lr in base_lrs])
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])


def _linear_factor(start: float, total: int) -> Callable[[int], float]:
    """Epoch -> lr factor rising linearly from ``start`` at 0 to 1 at ``total``."""

    def factor(epoch: int) -> float:
        return start + (1.0 - start) * min(epoch, total) / total

    return factor

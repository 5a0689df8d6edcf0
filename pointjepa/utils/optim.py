"""Learning-rate schedule from torch's building blocks."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine_schedule(
    optimizer: Optimizer, warmup_epochs: int, max_epochs: int, warmup_start_lr: float, eta_min: float
) -> LRScheduler:
    """Per-epoch schedule: linear from ``warmup_start_lr`` at epoch 0 to the base lr at epoch
    ``warmup_epochs - 1``, then cosine from the base lr at ``warmup_epochs`` to ``eta_min`` at ``max_epochs``.

    This is the schedule of pl_bolts' ``LinearWarmupCosineAnnealingLR`` used by the original.
    """
    if warmup_epochs < 0 or max_epochs < 1:
        raise ValueError(f"lr schedule: expected warmup_epochs >= 0 and max_epochs >= 1, got {warmup_epochs}, {max_epochs}")
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs), eta_min=eta_min)
    if warmup_epochs <= 1:
        return cosine
    warmup = LinearLR(optimizer, start_factor=warmup_start_lr / base_lr, end_factor=1.0, total_iters=warmup_epochs - 1)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_epochs])

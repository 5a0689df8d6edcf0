"""Part segmentation metrics: per-shape part IoU, instance and category mIoU (ShapeNetPart protocol).

A shape's IoU is the mean over the parts of its category of ``|pred ∩ true| / |pred ∪ true|``;
a part absent from both prediction and truth counts IoU 1. Instance mIoU averages over shapes,
category mIoU averages the per-category means over the categories that have shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchmetrics import Metric


def part_mask(category_to_parts: Mapping[str, Sequence[int]], num_parts: int) -> torch.Tensor:
    """Category -> parts table (categories in label order) -> bool mask (K, P) of each category's parts."""
    mask = torch.zeros(len(category_to_parts), num_parts, dtype=torch.bool)
    for label, (name, parts) in enumerate(category_to_parts.items()):
        bad = [p for p in parts if not 0 <= p < num_parts]
        if not parts or bad:
            raise ValueError(
                f"category_to_parts: category {name!r} must list part ids in [0, {num_parts}), got {list(parts)}"
            )
        mask[label, list(parts)] = True
    return mask


def restricted_argmax(scores: torch.Tensor, category: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Best part among the parts of each shape's category.

    Args:
        scores: (B, N, P) logits or log-probabilities.
        category: (B,) int64 category labels.
        mask: (K, P) bool, ``part_mask`` of the categories.

    Returns:
        (B, N) int64 predicted part ids.
    """
    allowed = mask[category].unsqueeze(1)  # (B, 1, P)
    return scores.masked_fill(~allowed, float("-inf")).argmax(dim=-1)


def part_ious(pred: torch.Tensor, target: torch.Tensor, num_parts: int) -> torch.Tensor:
    """IoU of every part in every shape, 1 where a part is in neither prediction nor truth.

    Args:
        pred, target: (B, N) int64 part ids in [0, num_parts).

    Returns:
        (B, P) float32 IoUs.
    """
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(
            f"pred and target: expected equal (B, N) shapes, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    ones = torch.ones_like(pred, dtype=torch.float32)
    zeros = torch.zeros(pred.shape[0], num_parts, device=pred.device)
    predicted = zeros.scatter_add(1, pred, ones)
    true = zeros.scatter_add(1, target, ones)
    intersection = zeros.scatter_add(1, target, (pred == target).float())
    union = predicted + true - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def shape_mious(pred: torch.Tensor, target: torch.Tensor, category: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred, target (B, N) part ids, category (B,), mask (K, P) -> (B,) mean IoU over each shape's category parts."""
    allowed = mask[category].float()  # (B, P)
    return (part_ious(pred, target, mask.shape[1]) * allowed).sum(1) / allowed.sum(1)


class PartSegmentationIoU(Metric):
    """Accumulates per-shape mIoUs by category; ``compute()`` gives instance, category and per-category mIoU.

    Args:
        category_to_parts: category name -> its part ids, categories in label order.
        num_parts: total number of parts P.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False
    mask: torch.Tensor
    iou_sum: torch.Tensor
    count: torch.Tensor

    def __init__(self, category_to_parts: Mapping[str, Sequence[int]], num_parts: int) -> None:
        super().__init__()
        self.category_names = list(category_to_parts)
        self.register_buffer("mask", part_mask(category_to_parts, num_parts), persistent=False)
        num_categories = len(self.category_names)
        self.add_state("iou_sum", default=torch.zeros(num_categories, dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(num_categories, dtype=torch.float32), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor, category: torch.Tensor) -> None:
        """pred, target (B, N) int64 part ids; category (B,) int64."""
        mious = shape_mious(pred, target, category, self.mask)
        self.iou_sum.index_add_(0, category, mious)
        self.count.index_add_(0, category, torch.ones_like(mious))

    def compute(self) -> dict[str, torch.Tensor]:
        """-> ``ins_miou`` (mean over shapes), ``cat_miou`` (mean over categories with shapes), ``per_category``
        (K,) mIoU (NaN for categories without shapes) and ``count`` (K,) shapes per category."""
        seen = self.count > 0
        nan = torch.full_like(self.count, float("nan"))
        per_category = torch.where(seen, self.iou_sum / self.count.clamp_min(1), nan)
        return {
            "ins_miou": self.iou_sum.sum() / self.count.sum().clamp_min(1),
            "cat_miou": per_category.nan_to_num().sum() / seen.sum().clamp_min(1),
            "per_category": per_category,
            "count": self.count,
        }

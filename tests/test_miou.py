"""Part segmentation metrics against hand-computed cases and a per-shape loop (the original's way)."""

from __future__ import annotations

import pytest
import torch

from pointjepa.datasets.synsets import SHAPENETPART_PARTS
from pointjepa.metrics.miou import PartSegmentationIoU, part_ious, part_mask, restricted_argmax, shape_mious

TWO_CATEGORIES = {"a": [0, 1], "b": [2, 3, 4]}


def test_part_ious_hand_computed() -> None:
    pred = torch.tensor([[0, 0, 1, 1]])
    target = torch.tensor([[0, 1, 1, 1]])
    # part 0: 1 / 2; part 1: 2 / 3; part 2 in neither prediction nor truth: 1
    assert torch.allclose(part_ious(pred, target, 3), torch.tensor([[1 / 2, 2 / 3, 1.0]]))


def test_part_predicted_but_absent_from_truth_counts_zero() -> None:
    pred = torch.tensor([[0, 1, 1, 1]])
    target = torch.tensor([[0, 0, 0, 0]])
    assert torch.allclose(part_ious(pred, target, 2), torch.tensor([[1 / 4, 0.0]]))


def test_shape_miou_averages_only_the_category_parts() -> None:
    mask = part_mask(TWO_CATEGORIES, 5)
    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    target = torch.tensor([[0, 1, 1, 1], [2, 2, 3, 3]])
    expected = torch.tensor([(1 / 2 + 2 / 3) / 2, (1 / 2 + 0.0 + 1.0) / 3])
    assert torch.allclose(shape_mious(pred, target, torch.tensor([0, 1]), mask), expected)


def test_absent_part_counts_one() -> None:
    mask = part_mask(TWO_CATEGORIES, 5)
    pred = target = torch.tensor([[2, 2, 3, 3]])  # part 4 absent from both
    assert shape_mious(pred, target, torch.tensor([1]), mask).item() == pytest.approx(1.0)


def test_restricted_argmax_never_picks_another_category_part() -> None:
    mask = part_mask(TWO_CATEGORIES, 5)
    scores = torch.tensor([[[0.1, 0.2, 9.0, 0.0, 0.0]], [[5.0, 0.0, 0.0, 1.0, 0.5]]])  # (B=2, N=1, P=5)
    assert restricted_argmax(scores, torch.tensor([0, 1]), mask).tolist() == [[1], [3]]


def test_metric_one_shape() -> None:
    metric = PartSegmentationIoU(TWO_CATEGORIES, 5)
    metric.update(torch.tensor([[0, 0, 1, 1]]), torch.tensor([[0, 1, 1, 1]]), torch.tensor([0]))
    result = metric.compute()
    expected = (1 / 2 + 2 / 3) / 2
    assert result["ins_miou"].item() == pytest.approx(expected)
    assert result["cat_miou"].item() == pytest.approx(expected)
    assert torch.isnan(result["per_category"][1]) and result["count"].tolist() == [1, 0]


def test_metric_many_categories_instance_vs_category_mean() -> None:
    table = {"a": [0, 1], "b": [2, 3], "unseen": [4, 5]}
    metric = PartSegmentationIoU(table, 6)
    perfect = torch.tensor([[0, 1, 0, 1]])
    half = torch.tensor([[2, 2, 3, 3]]), torch.tensor([[2, 3, 3, 3]])  # IoUs 1/2 and 2/3
    for _ in range(3):  # three perfect shapes of "a", in separate updates
        metric.update(perfect, perfect, torch.tensor([0]))
    metric.update(*half, torch.tensor([1]))
    result = metric.compute()
    shape_b = (1 / 2 + 2 / 3) / 2
    assert result["ins_miou"].item() == pytest.approx((3 * 1.0 + shape_b) / 4)
    assert result["cat_miou"].item() == pytest.approx((1.0 + shape_b) / 2)  # "unseen" has no shapes: left out
    metric.reset()
    assert metric.count.sum().item() == 0


def _loop_shape_mious(pred: torch.Tensor, target: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """The original's per-shape, per-part loop."""
    parts_of = list(SHAPENETPART_PARTS.values())
    result = []
    for i in range(pred.shape[0]):
        ious = []
        for part in parts_of[int(category[i])]:
            p, t = pred[i] == part, target[i] == part
            ious.append(1.0 if not p.any() and not t.any() else ((p & t).sum() / (p | t).sum()).item())
        result.append(sum(ious) / len(ious))
    return torch.tensor(result)


def test_matches_a_per_shape_loop_on_shapenetpart_table() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = part_mask(SHAPENETPART_PARTS, 50)
    category = torch.randint(0, 16, (12,), generator=generator)
    scores = torch.randn(12, 64, 50, generator=generator)
    target = restricted_argmax(torch.randn(12, 64, 50, generator=generator), category, mask)
    pred = restricted_argmax(scores, category, mask)
    assert torch.allclose(shape_mious(pred, target, category, mask), _loop_shape_mious(pred, target, category))


def test_part_mask_rejects_out_of_range_parts() -> None:
    with pytest.raises(ValueError, match="category_to_parts: category 'b'"):
        part_mask({"a": [0], "b": [1, 7]}, 5)

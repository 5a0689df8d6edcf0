"""The CPU fast paths give the results of the straightforward computations they replace: FPS and kNN
indices exactly, the mini-PointNet's outputs, running statistics and gradients to float rounding."""

import copy

import pytest
import torch

from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.pointnet import PointNetEncoder
from pointjepa.ops import farthest_point_sample, knn
from pointjepa.ops._backend import square_distances
from pointjepa.ops.fps import _first_argmax, _fps_loop_few_kernels, _fps_loop_planes
from tests.conftest import SMALL_PRETRAINING
from tests.reference import original_attention, original_pointnet, plain_loss, standin_fps, standin_knn


def clouds(batch: int, num_points: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (torch.rand(batch, num_points, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1).to(dtype)


def test_first_argmax_known_answers_across_blocks():
    values = torch.tensor(
        [[0.0, 5.0, 2.0, 5.0, 5.0, 1.0], [1.0, 1.0, 1.0, 7.0, 0.0, 7.0], [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]]
    )
    assert _first_argmax(values.view(3, 3, 2)).tolist() == [1, 3, 0]  # ties -> the lowest index


def test_first_argmax_matches_argmax_with_padding_and_nan():
    values = torch.rand(4, 300, generator=torch.Generator().manual_seed(1)).round(decimals=1)  # many ties
    values[2, 7] = float("nan")  # argmax counts NaN as the maximum
    padded = torch.cat([values, torch.full((4, 84), float("-inf"))], 1)  # 384 = 3 blocks of 128
    assert torch.equal(_first_argmax(padded.view(4, 3, 128)), values.argmax(-1))


@pytest.mark.parametrize(("num_points", "k"), [(100, 100), (300, 40), (1000, 128), (2048, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_gives_the_indices_of_the_plain_batched_loop(num_points, k, dtype):
    points = clouds(3, num_points, dtype=dtype)
    start = torch.tensor([0, num_points // 2, num_points - 1])
    assert torch.equal(
        farthest_point_sample(points, k, start_idx=start, backend="torch")[1], standin_fps(points, k, start)
    )


def test_fps_gives_the_plain_indices_on_tie_heavy_grids_and_half_input():
    grid = (clouds(4, 700, seed=2) * 3).round() / 3  # 343 distinct points: duplicates and equal distances
    assert torch.equal(farthest_point_sample(grid, 300, backend="torch")[1], standin_fps(grid, 300))
    half = clouds(2, 500, seed=3).half()
    assert torch.equal(farthest_point_sample(half, 64, backend="torch")[1], standin_fps(half.float(), 64))


def test_fps_loops_for_cpu_and_for_launch_bound_devices_agree():
    points = torch.cat([clouds(3, 1000, seed=6), (clouds(3, 1000, seed=7) * 4).round() / 4], 0)
    start = torch.tensor([0, 1, 999, 500, 3, 998])
    assert torch.equal(_fps_loop_planes(points, 200, start), _fps_loop_few_kernels(points, 200, start))


def test_square_distances_are_the_summed_coordinate_differences_bit_for_bit():
    points = torch.cat([clouds(2, 257, seed=4) * 1e3, (clouds(2, 257, seed=5) * 4).round() / 4], 0)
    query = points[:, :33] + 1e-4
    expected = (query[:, :, None, :] - points[:, None, :, :]).square().sum(-1)
    assert torch.equal(square_distances(query, points), expected)
    assert torch.equal(knn(query, points, 16, backend="torch")[1], standin_knn(query, points, 16))


def _conv_reference(encoder: PointNetEncoder, groups: torch.Tensor) -> torch.Tensor:
    """The Conv1d-over-concatenation computation that `original_pointnet` runs on a model."""
    holder = torch.nn.Module()
    holder.tokenizer = torch.nn.Module()
    holder.tokenizer.embedding = encoder
    return original_pointnet(holder, groups)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["small", "large"])
@pytest.mark.parametrize("conv_bias", [False, True])
def test_pointnet_matches_the_conv1d_computation_in_training(name, conv_bias):
    torch.manual_seed(0)
    ours = PointNetEncoder(3, 24, name)
    if conv_bias:  # Point-MAE layout: biased convolutions before the batch norms
        for seq in (ours.encoder.first_conv, ours.encoder.second_conv):
            seq[0] = torch.nn.Conv1d(seq[0].in_channels, seq[0].out_channels, 1)
    reference = copy.deepcopy(ours)
    groups = torch.randn(20, 16, 3)
    out, expected = ours(groups), _conv_reference(reference, groups)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for (name_a, a), (_, b) in zip(ours.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(a.float(), b.float(), atol=1e-6, rtol=1e-5, msg=name_a)
    (out.square().sum()).backward()
    (expected.square().sum()).backward()
    # Float rounding, measured against the largest gradient: the biases before batch norms have a true
    # gradient of 0, so theirs is rounding noise on both sides.
    scale = max(p.grad.abs().max().item() for p in reference.parameters())
    for (name_a, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=3e-6 * scale, rtol=1e-4, msg=name_a)


def test_pointnet_matches_the_conv1d_computation_in_eval():
    torch.manual_seed(0)
    ours = PointNetEncoder(3, 24).eval()
    for bn in (ours.encoder.first_conv[1], ours.encoder.second_conv[1]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    groups = torch.randn(10, 8, 3)
    torch.testing.assert_close(ours(groups), _conv_reference(ours, groups), atol=1e-5, rtol=1e-5)


def test_original_attention_reference_gives_the_models_loss():
    torch.manual_seed(0)
    model = PointJepa(**SMALL_PRETRAINING).eval()
    torch.nn.init.normal_(model.predictor.mask_token, std=0.02)
    reference = original_attention(copy.deepcopy(model))
    points = clouds(4, 512)
    with torch.no_grad():
        predictions, targets = model.jepa_step(model.val_transformations(points), torch.Generator().manual_seed(7))
        ours = model.loss_func(predictions, targets)
        plain = plain_loss(reference, points, torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, plain, atol=1e-6, rtol=1e-5)

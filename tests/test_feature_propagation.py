"""Feature propagation from token centers to points, against a brute-force version."""

from __future__ import annotations

import torch

from pointjepa.modules.feature_propagation import FeaturePropagation, interpolate_features


def _brute_force(points: torch.Tensor, centers: torch.Tensor, features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Per point: sort all centers by squared distance, weight the k nearest by 1 / (d² + eps)."""
    out = torch.empty(points.shape[0], points.shape[1], features.shape[-1], dtype=torch.float64)
    eps = torch.finfo(torch.float32).eps
    for b in range(points.shape[0]):
        for n in range(points.shape[1]):
            sq = ((centers[b].double() - points[b, n].double()) ** 2).sum(-1)
            order = sq.argsort()[: min(k, centers.shape[1])]
            w = 1.0 / (sq[order] + eps)
            out[b, n] = (features[b, order].double() * (w / w.sum())[:, None]).sum(0)
    return out


def test_interpolation_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(2, 40, 3, generator=generator)
    centers = torch.rand(2, 7, 3, generator=generator)
    features = torch.randn(2, 7, 5, generator=generator)
    expected = _brute_force(points, centers, features)
    assert torch.allclose(interpolate_features(points, centers, features).double(), expected, atol=1e-5)


def test_fewer_centers_than_neighbours() -> None:
    points = torch.rand(1, 10, 3)
    features = torch.randn(1, 1, 4)
    one = interpolate_features(points, torch.rand(1, 1, 3), features)
    assert torch.allclose(one, features.expand(1, 10, 4))
    centers, two_features = torch.rand(1, 2, 3), torch.randn(1, 2, 4)
    expected = _brute_force(points, centers, two_features)
    assert torch.allclose(interpolate_features(points, centers, two_features).double(), expected, atol=1e-5)


def test_point_on_a_center_takes_its_feature() -> None:
    centers = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    features = torch.arange(8.0).reshape(1, 4, 2)
    out = interpolate_features(centers[:, 1:2], centers, features)
    assert torch.allclose(out, features[:, 1:2], atol=1e-4)


def test_module_shapes_names_and_gradients() -> None:
    module = FeaturePropagation(in_channel=3 + 6, mlp=[16, 16])
    assert sorted(k for k in module.state_dict() if not k.endswith("num_batches_tracked")) == [
        "mlp_bns.0.bias", "mlp_bns.0.running_mean", "mlp_bns.0.running_var", "mlp_bns.0.weight",
        "mlp_bns.1.bias", "mlp_bns.1.running_mean", "mlp_bns.1.running_var", "mlp_bns.1.weight",
        "mlp_convs.0.weight", "mlp_convs.1.weight",
    ]  # fmt: skip
    points, centers = torch.rand(2, 30, 3), torch.rand(2, 5, 3)
    features = torch.randn(2, 5, 6, requires_grad=True)
    out = module(points, centers, points, features)
    assert out.shape == (2, 30, 16) and (out >= 0).all()
    out.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0

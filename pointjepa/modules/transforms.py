"""Batched point-cloud transforms that run on the device: (B, N, 3) in, (B, M, 3) out.

Random draws are per sample; they use the global torch generator of the points' device.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from pointjepa.ops import farthest_point_sample

TRANSFORM_NAMES = ("subsample", "scale", "center", "unit_sphere", "rotate", "translate", "height_norm")


class Subsample(nn.Module):
    """Farthest point sampling down to ``num_points`` (random start in training, first point in eval)."""

    def __init__(self, num_points: int) -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"transformation_subsample_points: expected a positive integer, got {num_points}")
        self.num_points = num_points

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        if points.shape[1] <= self.num_points:
            return points
        return farthest_point_sample(points, self.num_points, random_start=self.training)[0]


class Scale(nn.Module):
    """Anisotropic scaling by a per-axis factor in [min, max]; axes with symmetry 1 may also be mirrored."""

    def __init__(self, min: float, max: float, symmetries: Sequence[int] = (0, 0, 0)) -> None:
        super().__init__()
        if min > max or min <= 0:
            raise ValueError(f"transformation_scale_min/max: expected 0 < min <= max, got {min} and {max}")
        if len(symmetries) != 3 or any(s not in (0, 1) for s in symmetries):
            raise ValueError(f"transformation_scale_symmetries: expected three 0/1 flags, got {list(symmetries)}")
        self.min, self.max = min, max
        self.register_buffer("symmetries", torch.tensor(symmetries, dtype=torch.float32), persistent=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        B = points.shape[0]
        factor = torch.rand(B, 1, 3, device=points.device) * (self.max - self.min) + self.min
        flip = torch.randint(0, 2, (B, 1, 3), device=points.device) * 2 - 1
        sign = torch.where(self.symmetries.to(points.device) > 0, flip.float(), torch.ones_like(factor))
        return points * (factor * sign).to(points.dtype)


class Center(nn.Module):
    """Subtract each cloud's mean."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return points - points.mean(dim=1, keepdim=True)


class UnitSphere(nn.Module):
    """Divide each cloud by its largest point norm."""

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        radius = points.norm(dim=-1).amax(dim=1).clamp_min(1e-12)
        return points / radius[:, None, None]


def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """angle (B,) -> rotation matrices (B, 3, 3) about coordinate ``axis``."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == 1:
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


class Rotate(nn.Module):
    """Rotate about each axis in ``dims``: a uniform angle, or a random multiple of ``deg`` degrees."""

    def __init__(self, dims: Sequence[int] = (1,), deg: float | None = None) -> None:
        super().__init__()
        if any(d not in (0, 1, 2) for d in dims):
            raise ValueError(f"transformation_rotate_dims: expected axes among 0, 1, 2, got {list(dims)}")
        if deg is not None and deg <= 0:
            raise ValueError(f"transformation_rotate_degs: expected a positive angle or null, got {deg}")
        self.dims = list(dims)
        self.deg = deg

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        B = points.shape[0]
        rotation = torch.eye(3, device=points.device).expand(B, 3, 3)
        for axis in self.dims:
            if self.deg is None:
                angle = torch.rand(B, device=points.device) * 2 * math.pi
            else:
                steps = max(1, int(round(360 / self.deg)))
                angle = torch.randint(0, steps, (B,), device=points.device).float() * math.radians(self.deg)
            rotation = _axis_rotation(angle, axis) @ rotation
        return (points.float() @ rotation.transpose(1, 2)).to(points.dtype)


class Translate(nn.Module):
    """Shift each cloud by a per-axis offset in [-t, t]."""

    def __init__(self, translate: float) -> None:
        super().__init__()
        self.translate = translate

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        shift = (torch.rand(points.shape[0], 1, 3, device=points.device) * 2 - 1) * self.translate
        return points + shift.to(points.dtype)


class HeightNormalize(nn.Module):
    """Make the lowest coordinate along ``dim`` zero."""

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        if dim not in (0, 1, 2):
            raise ValueError(f"transformation_height_normalize_dim: expected 0, 1 or 2, got {dim}")
        self.dim = dim

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        offset = torch.zeros_like(points[:, :1])
        offset[..., self.dim] = points[..., self.dim].amin(dim=1, keepdim=True)
        return points - offset


def build_transforms(
    names: Sequence[str],
    subsample_points: int = 1024,
    scale_min: float = 0.8,
    scale_max: float = 1.2,
    scale_symmetries: Sequence[int] = (1, 0, 1),
    rotate_dims: Sequence[int] = (1,),
    rotate_degs: float | None = None,
    translate: float = 0.2,
    height_normalize_dim: int = 1,
) -> nn.Sequential:
    """The named transforms in order, as one ``nn.Sequential`` on (B, N, 3)."""
    factories = {
        "subsample": lambda: Subsample(subsample_points),
        "scale": lambda: Scale(scale_min, scale_max, scale_symmetries),
        "center": Center,
        "unit_sphere": UnitSphere,
        "rotate": lambda: Rotate(rotate_dims, rotate_degs),
        "translate": lambda: Translate(translate),
        "height_norm": lambda: HeightNormalize(height_normalize_dim),
    }
    unknown = [name for name in names if name not in factories]
    if unknown:
        raise ValueError(f"unknown transformation(s) {unknown}: expected names among {list(TRANSFORM_NAMES)}")
    return nn.Sequential(*(factories[name]() for name in names))


def transform_kwargs(hparams: Mapping[str, Any], subsample_points: int = 1024) -> dict[str, Any]:
    """``build_transforms`` keyword arguments from a task's ``transformation_*`` config keys."""
    return dict(
        subsample_points=subsample_points,
        scale_min=hparams["transformation_scale_min"],
        scale_max=hparams["transformation_scale_max"],
        scale_symmetries=hparams["transformation_scale_symmetries"],
        rotate_dims=hparams["transformation_rotate_dims"],
        rotate_degs=hparams["transformation_rotate_degs"],
        translate=hparams["transformation_translate"],
        height_normalize_dim=hparams["transformation_height_normalize_dim"],
    )


def build_task_transforms(hparams: Mapping[str, Any], subsample_points: int = 1024) -> tuple[nn.Sequential, nn.Sequential]:
    """(train, val) transforms from a task's ``train_transformations``/``val_transformations`` and
    ``transformation_*`` config keys; ``subsample_points`` sizes the ``subsample`` transform."""
    args = transform_kwargs(hparams, subsample_points)
    return build_transforms(hparams["train_transformations"], **args), build_transforms(hparams["val_transformations"], **args)

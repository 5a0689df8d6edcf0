"""Batched point-cloud transforms that run on the device: (B, N, 3) in, (B, M, 3) out.

Random transforms draw one value set per batch (every cloud of a batch gets the same scale, angle and
shift), or one per cloud with ``per_sample``; draws use the global torch generator of the points' device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pointjepa.ops import farthest_point_sample

TRANSFORM_NAMES = ("subsample", "scale", "center", "unit_sphere", "rotate", "translate", "height_norm")


def _num_draws(points: torch.Tensor, per_sample: bool) -> int:
    """How many independent draws a random transform makes for ``points`` (B, N, 3): B or 1."""
    return points.shape[0] if per_sample else 1


def fps_subsample(
    points: torch.Tensor,
    num_points: int,
    random_start: bool,
    option: str = "num_points",
) -> torch.Tensor:
    """points (B, N, 3) -> (B, num_points, 3) by farthest point sampling from a random start point or from the
    first one; clouds of exactly ``num_points`` pass unchanged. ``option`` names the setting in errors."""
    if points.shape[1] < num_points:
        raise ValueError(f"{option}={num_points}, but the point clouds have only {points.shape[1]} points")
    if points.shape[1] == num_points:
        return points
    return farthest_point_sample(points, num_points, random_start=random_start)[0]


class Subsample(nn.Module):
    """Farthest point sampling down to ``num_points``: a random start point in training (and in eval with
    ``random_start_in_eval``), else the first point. Clouds of exactly ``num_points`` pass unchanged.

    Args:
        num_points: points kept per cloud.
        random_start_in_eval: start FPS at a random point in eval mode too.
    """

    def __init__(self, num_points: int, random_start_in_eval: bool = False) -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"transformation_subsample_points: expected a positive integer, got {num_points}")
        self.num_points = num_points
        self.random_start_in_eval = random_start_in_eval

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        random_start = self.training or self.random_start_in_eval
        return fps_subsample(points, self.num_points, random_start, option="transformation_subsample_points")


class Scale(nn.Module):
    """Anisotropic scaling by a factor in [min, max) per axis; with ``mirror``, axes whose symmetry
    is 1 are also negated with probability 1/2.

    Args:
        min, max: range of the scale factors.
        symmetries: per axis, 1 to let ``mirror`` flip it.
        mirror: draw the flips (off: ``symmetries`` has no effect).
        per_sample: one draw per cloud instead of one per batch.
    """

    symmetries: torch.Tensor

    def __init__(
        self,
        min: float,
        max: float,
        symmetries: Sequence[int] = (0, 0, 0),
        mirror: bool = False,
        per_sample: bool = False,
    ) -> None:
        super().__init__()
        if min > max or min <= 0:
            raise ValueError(f"transformation_scale_min/max: expected 0 < min <= max, got {min} and {max}")
        if len(symmetries) != 3 or any(s not in (0, 1) for s in symmetries):
            raise ValueError(f"transformation_scale_symmetries: expected three 0/1 flags, got {list(symmetries)}")
        self.min, self.max = min, max
        self.mirror, self.per_sample = mirror, per_sample
        self.register_buffer("symmetries", torch.tensor(symmetries, dtype=torch.bool), persistent=False)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = _num_draws(points, self.per_sample)
        factor = torch.rand(n, 1, 3, device=points.device) * (self.max - self.min) + self.min
        if self.mirror:
            flip = torch.rand(n, 1, 3, device=points.device).round() * 2 - 1
            factor = torch.where(self.symmetries.to(points.device), factor * flip, factor)
        return points * factor.to(points.dtype)


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
    """angle (n,) -> rotation matrices (n, 3, 3) about coordinate ``axis`` (right-handed)."""
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
    """Rotate by the Euler angles (x, y, z convention ``XYZ``: R = Rx Ry Rz) drawn for the axes in
    ``dims``, the other angles zero. An angle is uniform in [-180, 180) degrees, or with ``deg`` one of
    k * deg - 180 for k * deg in [0, 360).

    Args:
        dims: axes to rotate about (0 = x, 1 = y, 2 = z).
        deg: rotation step in degrees; ``None`` for any angle.
        per_sample: one draw per cloud instead of one per batch.
    """

    def __init__(self, dims: Sequence[int] = (1,), deg: float | None = None, per_sample: bool = False) -> None:
        super().__init__()
        if any(d not in (0, 1, 2) for d in dims):
            raise ValueError(f"transformation_rotate_dims: expected axes among 0, 1, 2, got {list(dims)}")
        if deg is not None and deg <= 0:
            raise ValueError(f"transformation_rotate_degs: expected a positive angle or null, got {deg}")
        self.dims = list(dims)
        self.deg = deg
        self.per_sample = per_sample

    def _angle(self, n: int, device: torch.device) -> torch.Tensor:
        """(n,) angles in radians."""
        if self.deg is None:
            return torch.rand(n, device=device) * (2 * math.pi) - math.pi
        steps = math.ceil(360 / self.deg)
        return torch.randint(steps, (n,), device=device) * math.radians(self.deg) - math.pi

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = _num_draws(points, self.per_sample)
        angles = {axis: self._angle(n, points.device) for axis in self.dims}  # a repeated axis: the last draw
        rotation = torch.eye(3, device=points.device).expand(n, 3, 3)
        for axis in sorted(angles):
            rotation = rotation @ _axis_rotation(angles[axis], axis)
        return (points.float() @ rotation.transpose(1, 2)).to(points.dtype)


class Translate(nn.Module):
    """Shift by an offset in [-t, t) per axis.

    Args:
        translate: the largest shift t.
        per_sample: one draw per cloud instead of one per batch.
    """

    def __init__(self, translate: float, per_sample: bool = False) -> None:
        super().__init__()
        self.translate = translate
        self.per_sample = per_sample

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        n = _num_draws(points, self.per_sample)
        shift = torch.rand(n, 1, 3, device=points.device) * 2 * self.translate - self.translate
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
    scale_mirror: bool = False,
    rotate_dims: Sequence[int] = (1,),
    rotate_degs: float | None = None,
    translate: float = 0.2,
    height_normalize_dim: int = 1,
    per_sample: bool = False,
    random_start_in_eval: bool = False,
) -> nn.Sequential:
    """The named transforms in order, as one ``nn.Sequential`` on (B, N, 3)."""
    factories = {
        "subsample": lambda: Subsample(subsample_points, random_start_in_eval),
        "scale": lambda: Scale(scale_min, scale_max, scale_symmetries, scale_mirror, per_sample),
        "center": Center,
        "unit_sphere": UnitSphere,
        "rotate": lambda: Rotate(rotate_dims, rotate_degs, per_sample),
        "translate": lambda: Translate(translate, per_sample),
        "height_norm": lambda: HeightNormalize(height_normalize_dim),
    }
    unknown = [name for name in names if name not in factories]
    if unknown:
        raise ValueError(f"unknown transformation(s) {unknown}: expected names among {list(TRANSFORM_NAMES)}")
    return nn.Sequential(*(factories[name]() for name in names))


def transform_kwargs(hparams: Mapping[str, Any], subsample_points: int = 1024) -> dict[str, Any]:
    """``build_transforms`` keyword arguments from a task's ``transformation_*`` config keys (and
    ``fps_random_start_in_eval``); keys that older checkpoints lack take their defaults."""
    return dict(
        subsample_points=subsample_points,
        scale_min=hparams["transformation_scale_min"],
        scale_max=hparams["transformation_scale_max"],
        scale_symmetries=hparams["transformation_scale_symmetries"],
        scale_mirror=hparams.get("transformation_scale_mirror", False),
        rotate_dims=hparams["transformation_rotate_dims"],
        rotate_degs=hparams["transformation_rotate_degs"],
        translate=hparams["transformation_translate"],
        height_normalize_dim=hparams["transformation_height_normalize_dim"],
        per_sample=hparams.get("transformation_per_sample", False),
        random_start_in_eval=hparams.get("fps_random_start_in_eval", False),
    )


def build_task_transforms(
    hparams: Mapping[str, Any], subsample_points: int = 1024
) -> tuple[nn.Sequential, nn.Sequential]:
    """(train, val) transforms from a task's ``train_transformations``/``val_transformations`` and
    ``transformation_*`` config keys; ``subsample_points`` sizes the ``subsample`` transform."""
    args = transform_kwargs(hparams, subsample_points)
    return build_transforms(hparams["train_transformations"], **args), build_transforms(
        hparams["val_transformations"], **args
    )

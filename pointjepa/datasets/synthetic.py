"""Built-in synthetic data set: procedural shapes of several classes, made in memory, no download."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pointjepa.datasets.base import PointCloudDataModule
from pointjepa.datasets.shapes import SHAPES, random_pose


def make_shapes(
    shapes: Sequence[str], samples_per_class: int, num_points: int, seed: int, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """-> points (n, num_points, 3) float32 and labels (n,) int64, classes in ``shapes`` order, shuffled."""
    rng = np.random.default_rng(seed)
    clouds = [SHAPES[name](rng, samples_per_class, num_points) for name in shapes]
    points = random_pose(rng, np.concatenate(clouds), noise).astype(np.float32)
    labels = np.repeat(np.arange(len(shapes), dtype=np.int64), samples_per_class)
    order = rng.permutation(len(labels))
    return points[order], labels[order]


class SyntheticShapesDataModule(PointCloudDataModule):
    """Procedural shapes (sphere, cube, cylinder, cone, torus, pyramid, dumbbell, disk) with random
    pose, anisotropic scale and noise; deterministic given ``seed``. Train and val use different draws.

    Batches: points float32 (B, num_points, 3), labels int64 (B,).

    Args:
        num_points: points per cloud.
        samples_per_class: training clouds per class.
        val_samples_per_class: validation clouds per class.
        shapes: which shape classes to use (default all), in label order.
        noise: standard deviation of the Gaussian jitter.
        seed: generator seed; the val split uses ``seed + 1``.
        batch_size, num_workers, drop_last, pin_memory, persistent_workers: see ``PointCloudDataModule``.
    """

    def __init__(
        self,
        num_points: int = 1024,
        samples_per_class: int = 64,
        val_samples_per_class: int = 16,
        shapes: list[str] | None = None,
        noise: float = 0.01,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        shapes = list(SHAPES) if shapes is None else list(shapes)
        unknown = [name for name in shapes if name not in SHAPES]
        if unknown or len(shapes) < 2:
            raise ValueError(f"shapes: expected at least two of {list(SHAPES)}, got {shapes}")
        if num_points < 1 or samples_per_class < 1 or val_samples_per_class < 1:
            raise ValueError("num_points, samples_per_class and val_samples_per_class must be positive")
        self.shapes = shapes
        self.num_points = num_points
        self.samples_per_class = samples_per_class
        self.val_samples_per_class = val_samples_per_class
        self.noise = noise
        self.seed = seed

    @property
    def label_names(self) -> list[str]:
        return self.shapes

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        for split, count, seed in (
            ("train", self.samples_per_class, self.seed),
            ("val", self.val_samples_per_class, self.seed + 1),
        ):
            points, labels = make_shapes(self.shapes, count, self.num_points, seed, self.noise)
            setattr(self, f"{split}_dataset", TensorDataset(torch.from_numpy(points), torch.from_numpy(labels)))

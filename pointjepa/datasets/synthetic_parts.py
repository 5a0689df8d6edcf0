"""Built-in synthetic part segmentation data: procedural shapes made of labelled parts, in memory.

Categories and their parts (in label order): mushroom (stem, cap), airplane (body, wings, tail),
table (top, legs), lamp (base, pole, shade), mug (body, handle). Part dimensions vary per shape;
every shape gets a random rotation about the vertical (y) axis, anisotropic scale, shift and noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pointjepa.datasets.base import PointCloudDataModule

Rng = np.random.Generator
Piece = tuple[float, int, Callable[[int], np.ndarray]]  # (share of the points, local part id, sampler(m) -> (n, m, 3))


def _param(rng: Rng, n: int, low: float, high: float) -> np.ndarray:
    """One value per shape, (n, 1), broadcasting over points."""
    return rng.uniform(low, high, size=(n, 1))


def tube(rng: Rng, n: int, m: int, radius: np.ndarray, y0: np.ndarray | float, y1: np.ndarray | float) -> np.ndarray:
    """Side of a vertical cylinder (around y) from height y0 to y1."""
    theta = rng.uniform(0, 2 * np.pi, size=(n, m))
    y = y0 + (y1 - y0) * rng.uniform(size=(n, m))
    return np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], axis=-1)


def frustum(rng: Rng, n: int, m: int, r0: np.ndarray, r1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """Side of a vertical cone frustum, radius r0 at y0 and r1 at y1."""
    t = rng.uniform(size=(n, m))
    theta = rng.uniform(0, 2 * np.pi, size=(n, m))
    radius = r0 + (r1 - r0) * t
    return np.stack([radius * np.cos(theta), y0 + (y1 - y0) * t, radius * np.sin(theta)], axis=-1)


def disk(rng: Rng, n: int, m: int, radius: np.ndarray, y: np.ndarray | float) -> np.ndarray:
    """Filled horizontal disk at height y."""
    r = radius * np.sqrt(rng.uniform(size=(n, m)))
    theta = rng.uniform(0, 2 * np.pi, size=(n, m))
    return np.stack([r * np.cos(theta), np.broadcast_to(y, (n, m)), r * np.sin(theta)], axis=-1)


def dome(rng: Rng, n: int, m: int, radius: np.ndarray, height: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Upper half of an ellipsoid (radius in x/z, ``height`` in y) standing on height y."""
    d = rng.normal(size=(n, m, 3))
    d /= np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-12)
    return np.stack([radius * d[..., 0], y + height * np.abs(d[..., 1]), radius * d[..., 2]], axis=-1)


def box(rng: Rng, n: int, m: int, center: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Surface of axis-aligned boxes; center and half sizes (n, 1, 3) or per point (n, m, 3)."""
    half = np.broadcast_to(half, (n, m, 3))
    face_area = np.stack([half[..., 1] * half[..., 2], half[..., 0] * half[..., 2], half[..., 0] * half[..., 1]], -1)
    cumulative = np.cumsum(face_area / face_area.sum(-1, keepdims=True), axis=-1)
    axis = (rng.uniform(size=(n, m, 1)) > cumulative[..., :2]).sum(-1)  # face axis with probability ~ area
    p = rng.uniform(-1, 1, size=(n, m, 3))
    np.put_along_axis(p, axis[..., None], rng.choice([-1.0, 1.0], size=(n, m, 1)), axis=-1)
    return center + p * half


def _along_x(points: np.ndarray) -> np.ndarray:
    """Turn a shape built along y to lie along x."""
    return points[..., [1, 0, 2]]


def mushroom(rng: Rng, n: int) -> list[Piece]:
    h, stem_r = _param(rng, n, 0.6, 1.0), _param(rng, n, 0.08, 0.16)
    cap_r, cap_h = _param(rng, n, 0.45, 0.75), _param(rng, n, 0.25, 0.5)
    return [
        (0.35, 0, lambda m: tube(rng, n, m, stem_r, 0.0, h)),
        (0.45, 1, lambda m: dome(rng, n, m, cap_r, cap_h, h)),
        (0.20, 1, lambda m: disk(rng, n, m, cap_r, h)),
    ]


def airplane(rng: Rng, n: int) -> list[Piece]:
    length, body_r = _param(rng, n, 1.6, 2.2), _param(rng, n, 0.1, 0.16)
    chord, span, fin = _param(rng, n, 0.15, 0.25), _param(rng, n, 0.6, 0.9), _param(rng, n, 0.12, 0.22)
    zero = np.zeros((n, 1))
    wing_center = np.stack([_param(rng, n, -0.1, 0.2), zero, zero], -1)
    tail_x = -length / 2 + 0.15
    fin_center = np.stack([tail_x, body_r + fin, zero], -1)
    stabilizer_center = np.stack([tail_x, zero, zero], -1)
    return [
        (0.40, 0, lambda m: _along_x(tube(rng, n, m, body_r, -length / 2, length / 2))),
        (0.40, 1, lambda m: box(rng, n, m, wing_center, np.stack([chord, zero + 0.02, span], -1))),
        (0.10, 2, lambda m: box(rng, n, m, fin_center, np.stack([zero + 0.12, fin, zero + 0.02], -1))),
        (0.10, 2, lambda m: box(rng, n, m, stabilizer_center, np.stack([zero + 0.1, zero + 0.02, 0.4 * span], -1))),
    ]


def table(rng: Rng, n: int) -> list[Piece]:
    height, width = _param(rng, n, 0.6, 0.9), _param(rng, n, 0.5, 0.9)
    depth, thick = _param(rng, n, 0.35, 0.7), _param(rng, n, 0.03, 0.06)

    def legs(m: int) -> np.ndarray:
        corner = rng.choice([-1.0, 1.0], size=(n, m, 2))
        x, z = corner[..., 0] * (width - 0.06), corner[..., 1] * (depth - 0.06)
        center = np.stack([x, np.broadcast_to(height / 2, (n, m)), z], -1)
        return box(rng, n, m, center, np.stack([np.full((n, 1), 0.04), height / 2, np.full((n, 1), 0.04)], -1))

    top_center = np.stack([np.zeros((n, 1)), height, np.zeros((n, 1))], -1)
    return [(0.55, 0, lambda m: box(rng, n, m, top_center, np.stack([width, thick, depth], -1))), (0.45, 1, legs)]


def lamp(rng: Rng, n: int) -> list[Piece]:
    base_r, pole_r, pole_h = _param(rng, n, 0.25, 0.4), _param(rng, n, 0.025, 0.045), _param(rng, n, 0.7, 1.1)
    shade_r0, shade_r1, shade_h = _param(rng, n, 0.3, 0.45), _param(rng, n, 0.12, 0.22), _param(rng, n, 0.3, 0.45)
    return [
        (0.18, 0, lambda m: disk(rng, n, m, base_r, 0.06)),
        (0.07, 0, lambda m: tube(rng, n, m, base_r, 0.0, 0.06)),
        (0.25, 1, lambda m: tube(rng, n, m, pole_r, 0.06, pole_h)),
        (0.50, 2, lambda m: frustum(rng, n, m, shade_r0, shade_r1, pole_h - 0.1, pole_h - 0.1 + shade_h)),
    ]


def mug(rng: Rng, n: int) -> list[Piece]:
    radius, height = _param(rng, n, 0.3, 0.45), _param(rng, n, 0.6, 1.0)
    ring, thick = np.minimum(_param(rng, n, 0.18, 0.28), 0.4 * height), _param(rng, n, 0.03, 0.05)

    def handle(m: int) -> np.ndarray:
        phi, v = rng.uniform(-np.pi / 2, np.pi / 2, size=(n, m)), rng.uniform(0, 2 * np.pi, size=(n, m))
        r = ring + thick * np.cos(v)
        return np.stack([radius + r * np.cos(phi), height / 2 + r * np.sin(phi), thick * np.sin(v)], -1)

    return [
        (0.60, 0, lambda m: tube(rng, n, m, radius, 0.0, height)),
        (0.15, 0, lambda m: disk(rng, n, m, radius, 0.0)),
        (0.25, 1, handle),
    ]


CATEGORIES: dict[str, tuple[Callable[[Rng, int], list[Piece]], tuple[str, ...]]] = {
    "mushroom": (mushroom, ("stem", "cap")),
    "airplane": (airplane, ("body", "wings", "tail")),
    "table": (table, ("top", "legs")),
    "lamp": (lamp, ("base", "pole", "shade")),
    "mug": (mug, ("body", "handle")),
}


def sample_category(rng: Rng, category: str, n: int, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """n shapes of ``category`` -> points (n, num_points, 3) in random order, local part ids (n, num_points)."""
    pieces = CATEGORIES[category][0](rng, n)
    counts = [int(share * num_points) for share, _, _ in pieces]
    counts[-1] = num_points - sum(counts[:-1])
    points = np.concatenate([sampler(m) for (_, _, sampler), m in zip(pieces, counts)], axis=1)
    parts = np.concatenate([np.full(m, part) for (_, part, _), m in zip(pieces, counts)])
    order = np.argsort(rng.uniform(size=(n, num_points)), axis=1)
    return np.take_along_axis(points, order[..., None], axis=1), parts[order]


def random_yaw_pose(rng: Rng, clouds: np.ndarray, noise: float) -> np.ndarray:
    """Centre each cloud, then anisotropic scale in [0.85, 1.15], rotation about y, shift and Gaussian noise."""
    n = clouds.shape[0]
    clouds = (clouds - clouds.mean(axis=1, keepdims=True)) * rng.uniform(0.85, 1.15, size=(n, 1, 3))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    c, s, zero, one = np.cos(angle), np.sin(angle), np.zeros(n), np.ones(n)
    rotation = np.stack([np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)], -2)
    clouds = clouds @ rotation.transpose(0, 2, 1) + rng.uniform(-0.1, 0.1, size=(n, 1, 3))
    return clouds + rng.normal(scale=noise, size=clouds.shape)


def parts_table(categories: Sequence[str]) -> dict[str, list[int]]:
    """Category -> global part ids, numbered consecutively over ``categories`` in order."""
    table, start = {}, 0
    for name in categories:
        size = len(CATEGORIES[name][1])
        table[name] = list(range(start, start + size))
        start += size
    return table


def make_part_shapes(
    categories: Sequence[str], samples_per_category: int, num_points: int, seed: int, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> points float32 (n, num_points, 3), category int64 (n,), global part ids int64 (n, num_points), shuffled."""
    rng = np.random.default_rng(seed)
    table = parts_table(categories)
    clouds, segs = [], []
    for name in categories:
        points, local = sample_category(rng, name, samples_per_category, num_points)
        clouds.append(points)
        segs.append(np.asarray(table[name])[local])
    points = random_yaw_pose(rng, np.concatenate(clouds), noise).astype(np.float32)
    category = np.repeat(np.arange(len(categories), dtype=np.int64), samples_per_category)
    order = rng.permutation(len(category))
    return points[order], category[order], np.concatenate(segs).astype(np.int64)[order]


class SyntheticPartsDataModule(PointCloudDataModule):
    """Procedural shapes made of labelled parts (see the module docstring), deterministic given ``seed``.

    Batches: ``points float32 (B, num_points, 3), category int64 (B,), seg int64 (B, num_points)``, like
    ``ShapeNetPartDataModule``; parts are numbered consecutively over the chosen categories.

    Args:
        num_points: points per shape.
        samples_per_category: training shapes per category.
        val_samples_per_category: validation shapes per category.
        categories: which categories to use (default all), in label order.
        noise: standard deviation of the Gaussian jitter.
        seed: generator seed; the val split uses ``seed + 1``.
        batch_size, num_workers, drop_last, pin_memory, persistent_workers: see ``PointCloudDataModule``.
    """

    def __init__(
        self,
        num_points: int = 1024,
        samples_per_category: int = 64,
        val_samples_per_category: int = 16,
        categories: list[str] | None = None,
        noise: float = 0.01,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = False,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        categories = list(CATEGORIES) if categories is None else list(categories)
        unknown = [name for name in categories if name not in CATEGORIES]
        if unknown or not categories or len(set(categories)) != len(categories):
            raise ValueError(f"categories: expected distinct names among {list(CATEGORIES)}, got {categories}")
        if num_points < 1 or samples_per_category < 1 or val_samples_per_category < 1:
            raise ValueError("num_points, samples_per_category and val_samples_per_category must be positive")
        self.categories = categories
        self.num_points = num_points
        self.samples_per_category = samples_per_category
        self.val_samples_per_category = val_samples_per_category
        self.noise = noise
        self.seed = seed

    @property
    def label_names(self) -> list[str]:
        return self.categories

    @property
    def category_to_parts(self) -> dict[str, list[int]]:
        """Category name -> its global part ids."""
        return parts_table(self.categories)

    @property
    def num_seg_classes(self) -> int:
        return sum(len(CATEGORIES[name][1]) for name in self.categories)

    @property
    def part_names(self) -> list[str]:
        """``<category>/<part>`` for every global part id."""
        return [f"{name}/{part}" for name in self.categories for part in CATEGORIES[name][1]]

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        for split, count, seed in (
            ("train", self.samples_per_category, self.seed),
            ("val", self.val_samples_per_category, self.seed + 1),
        ):
            points, category, seg = make_part_shapes(self.categories, count, self.num_points, seed, self.noise)
            dataset = TensorDataset(torch.from_numpy(points), torch.from_numpy(category), torch.from_numpy(seg))
            setattr(self, f"{split}_dataset", dataset)

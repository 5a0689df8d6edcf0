"""Procedural surface samplers for the built-in synthetic data sets: each returns (n, N, 3) float32."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def sphere(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    return _unit(rng.normal(size=(n, points, 3)))


def cube(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    p = rng.uniform(-1, 1, size=(n, points, 3))
    axis = rng.integers(0, 3, size=(n, points))
    side = rng.choice([-1.0, 1.0], size=(n, points))
    np.put_along_axis(p, axis[..., None], side[..., None], axis=-1)
    return p


def cylinder(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, size=(n, points))
    on_cap = rng.uniform(size=(n, points)) < 1 / 3
    radius = np.where(on_cap, np.sqrt(rng.uniform(size=(n, points))), 1.0)
    height = np.where(on_cap, rng.choice([-1.0, 1.0], size=(n, points)), rng.uniform(-1, 1, size=(n, points)))
    return np.stack([radius * np.cos(theta), height, radius * np.sin(theta)], axis=-1)


def cone(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, size=(n, points))
    on_base = rng.uniform(size=(n, points)) < 0.3
    radius = np.sqrt(rng.uniform(size=(n, points)))  # area-uniform on the slant and on the base
    height = np.where(on_base, -1.0, 1.0 - 2.0 * radius)
    return np.stack([radius * np.cos(theta), height, radius * np.sin(theta)], axis=-1)


def torus(rng: np.random.Generator, n: int, points: int, tube: float = 0.35) -> np.ndarray:
    u = rng.uniform(0, 2 * np.pi, size=(n, points))
    v = rng.uniform(0, 2 * np.pi, size=(n, points))
    ring = 1.0 + tube * np.cos(v)
    return np.stack([ring * np.cos(u), tube * np.sin(v), ring * np.sin(u)], axis=-1)


def pyramid(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    base = np.array([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1]], dtype=np.float64)
    apex = np.array([0.0, 1.0, 0.0])
    faces = np.stack([np.stack([base[i], base[(i + 1) % 4], apex]) for i in range(4)])  # (4, 3, 3)
    face = rng.integers(0, 4, size=(n, points))
    a, b = rng.uniform(size=(2, n, points, 1))
    flip = (a + b) > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    tri = faces[face]  # (n, points, 3, 3)
    p = tri[..., 0, :] + a * (tri[..., 1, :] - tri[..., 0, :]) + b * (tri[..., 2, :] - tri[..., 0, :])
    on_base = rng.uniform(size=(n, points, 1)) < 0.25
    base_points = np.stack(
        [rng.uniform(-1, 1, size=(n, points)), -np.ones((n, points)), rng.uniform(-1, 1, size=(n, points))], axis=-1
    )
    return np.where(on_base, base_points, p)


def dumbbell(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    p = 0.55 * sphere(rng, n, points)
    side = rng.choice([-1.0, 1.0], size=(n, points, 1))
    bar = rng.uniform(size=(n, points, 1)) < 0.2
    rod = np.concatenate(
        [rng.uniform(-0.5, 0.5, size=(n, points, 1)), 0.1 * _unit(rng.normal(size=(n, points, 2)))], -1
    )
    return np.where(bar, rod, p + side * np.array([1.0, 0.0, 0.0]))


def disk(rng: np.random.Generator, n: int, points: int) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi, size=(n, points))
    radius = np.sqrt(rng.uniform(0.09, 1.0, size=(n, points)))  # a ring with a hole
    return np.stack([radius * np.cos(theta), rng.normal(scale=0.02, size=(n, points)), radius * np.sin(theta)], -1)


SHAPES: dict[str, Sampler] = {
    "sphere": sphere,
    "cube": cube,
    "cylinder": cylinder,
    "cone": cone,
    "torus": torus,
    "pyramid": pyramid,
    "dumbbell": dumbbell,
    "disk": disk,
}


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniformly random rotation matrices (n, 3, 3) from the QR decomposition of Gaussian matrices."""
    q, r = np.linalg.qr(rng.normal(size=(n, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    det = np.linalg.det(q)
    q[det < 0, :, 0] *= -1
    return q


def random_pose(rng: np.random.Generator, clouds: np.ndarray, noise: float = 0.01) -> np.ndarray:
    """Per-cloud anisotropic scale in [0.7, 1.3], random rotation, small shift and Gaussian noise."""
    n = clouds.shape[0]
    clouds = clouds * rng.uniform(0.7, 1.3, size=(n, 1, 3))
    clouds = clouds @ random_rotations(rng, n).transpose(0, 2, 1)
    clouds = clouds + rng.uniform(-0.1, 0.1, size=(n, 1, 3))
    return clouds + rng.normal(scale=noise, size=clouds.shape)

"""Readers and validators of the published file formats (h5, npy, npz, txt lists).

Every failure is one ``DataError`` naming the file and what was expected there. Header-only
helpers (``h5_len``, ``npz_shapes``, ``count_lines``) let ``process.check`` count cheaply.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pointjepa.datasets.base import DataError, require_path


def read_lines(path: str | Path, what: str) -> list[str]:
    """Non-blank stripped lines of a text file; ``DataError`` when it is missing or empty."""
    path = require_path(path, what)
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what}: {e}") from e
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{path}: empty file (expected {what})")
    return lines


def count_lines(path: str | Path) -> int:
    """Number of non-blank lines of a text file (0 when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def check_points(points: np.ndarray, path: str | Path, what: str = "data") -> np.ndarray:
    """Check ``points`` is finite ``(n, N, 3+)`` with ``n, N > 0``; return its xyz as float32 ``(n, N, 3)``."""
    if points.ndim != 3 or points.shape[0] == 0 or points.shape[1] == 0 or points.shape[2] < 3:
        raise DataError(f"{path}: '{what}' has shape {points.shape}, expected (n, N, 3) points with n, N > 0")
    if not np.issubdtype(points.dtype, np.number):
        raise DataError(f"{path}: '{what}' has dtype {points.dtype}, expected float points")
    xyz = np.ascontiguousarray(points[..., :3], dtype=np.float32)
    finite = np.isfinite(xyz).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{path}: '{what}' cloud {bad[0]} (and {len(bad) - 1} more) holds NaN or Inf coordinates")
    return xyz


def check_labels(labels: np.ndarray, path: str | Path, n: int, num_classes: int, what: str = "label") -> np.ndarray:
    """Check ``labels`` is ``(n,)`` or ``(n, 1)`` integers in ``[0, num_classes)``; return int64 ``(n,)``."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise DataError(f"{path}: '{what}' has shape {labels.shape}, expected ({n},) or ({n}, 1) to match the points")
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.asarray(labels) == np.round(labels)):
        raise DataError(f"{path}: '{what}' has dtype {labels.dtype} or non-integer values, expected integer labels")
    labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: '{what}'[{i}] = {labels[i]}, expected labels in [0, {num_classes})")
    return labels


def load_h5(path: str | Path, keys: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """Read ``keys`` of an HDF5 file; ``DataError`` when it is missing, unreadable or lacks a key."""
    import h5py

    path = require_path(path, what)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise DataError(
                    f"{path}: no key {missing[0]!r} (has {sorted(f.keys())}), expected {what} with keys {list(keys)}"
                )
            return {k: np.asarray(f[k][()]) for k in keys}
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file (expected {what}): {e}") from e


def h5_len(path: str | Path, key: str = "data") -> int:
    """First dimension of ``key`` in an HDF5 file, read from its header."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if key not in f or not f[key].shape:
                raise DataError(
                    f"{path}: no array {key!r} (has {sorted(f.keys())}), expected {key!r} of shape (n, ...)"
                )
            return int(f[key].shape[0])
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file: {e}") from e


def npz_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays in an ``.npz`` file, read from the array headers only."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, _ = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, _ = np.lib.format.read_array_header_2_0(f)
                shapes[name.removesuffix(".npy")] = shape
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from e
    return shapes


def load_h5_classification(paths: Sequence[Path], num_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``data`` and ``label`` of several HDF5 files: points ``(n, N, 3)``, labels ``(n,)``."""
    if not paths:
        raise DataError(f"no files given (expected {what})")
    points, labels = [], []
    for path in paths:
        arrays = load_h5(path, ("data", "label"), what)
        points.append(check_points(arrays["data"], path))
        labels.append(check_labels(arrays["label"], path, len(points[-1]), num_classes))
        if points[-1].shape[1:] != points[0].shape[1:]:
            expected = f"(n, {points[0].shape[1]}, 3) like {paths[0]}"
            raise DataError(f"{path}: 'data' has shape {points[-1].shape}, expected {expected}")
    return np.concatenate(points), np.concatenate(labels)


class PointCloudArrays(Dataset):
    """In-memory point clouds: item ``i`` is ``(points float32 (N, 3), label int)``.

    Args:
        points: ``(n, N, 3)`` float32 array.
        labels: ``(n,)`` int64 array.
    """

    def __init__(self, points: np.ndarray, labels: np.ndarray) -> None:
        self.points = points
        self.labels = labels

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.points[index]), int(self.labels[index])

"""Reading one point cloud from a file of your own: point files (``.npy``, ``.npz``, ``.txt``, ``.xyz``,
``.pts``) and meshes or point clouds through trimesh (``.ply``, ``.off``, ``.obj``, ``.stl``, ``.glb``).

Every cloud comes out as ``num_points`` xyz points: meshes are sampled uniformly on their surface, point
files with more points give a random subset, with fewer a random fill-up (all points plus repeats). The
draws come from a generator seeded with a hash of the file's bytes (and ``seed``), so the same file gives
the same cloud in any order, process or run. Every failure is one ``DataError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from types import ModuleType

import numpy as np

from pointjepa.datasets.base import DataError

POINT_SUFFIXES = (".npy", ".npz", ".txt", ".xyz", ".pts")
MESH_SUFFIXES = (".ply", ".off", ".obj", ".stl", ".glb")
SUFFIXES = POINT_SUFFIXES + MESH_SUFFIXES
#: Arrays an ``.npz`` with several arrays is read from, first found first.
NPZ_KEYS = ("points", "xyz", "data")
MESH_EXTRA_HINT = "pip install 'pointjepa[mesh]' (the 'mesh' extra: trimesh)"


def file_generator(data: bytes, seed: int) -> np.random.Generator:
    """A generator seeded from a hash of ``data`` and ``seed``: the same bytes give the same draws anywhere."""
    digest = hashlib.blake2b(seed.to_bytes(8, "little", signed=True), digest_size=8)
    digest.update(data)
    return np.random.default_rng(int.from_bytes(digest.digest(), "little"))


def resample(points: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """points (n, 3) -> (num_points, 3): as is when n == num_points, a random subset (in file order) when
    larger, all points followed by random repeats when smaller."""
    n = len(points)
    if n == num_points:
        return points
    if n > num_points:
        return points[np.sort(rng.choice(n, num_points, replace=False))]
    return points[np.concatenate([np.arange(n), rng.choice(n, num_points - n)])]


def check_xyz(points: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(n, 3+) finite numbers with n > 0 -> their xyz as float32 (n, 3); else ``DataError`` naming ``path``."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise DataError(f"{path}: {what} has shape {points.shape}, expected (N, 3) points (xyz in the first 3 columns)")
    if len(points) == 0:
        raise DataError(f"{path}: {what} holds no points")
    if not np.issubdtype(points.dtype, np.number):
        raise DataError(f"{path}: {what} has dtype {points.dtype}, expected numbers")
    xyz = np.ascontiguousarray(points[:, :3], dtype=np.float32)
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        raise DataError(f"{path}: {what} holds NaN or Inf coordinates ({int((~finite).sum())} of {len(xyz)} points)")
    return xyz


def _npz_array(path: Path, data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        names = archive.files
        key = names[0] if len(names) == 1 else next((k for k in NPZ_KEYS if k in names), None)
        if key is None:
            raise DataError(f"{path}: arrays {names}, expected one array or one named {' / '.join(NPZ_KEYS)}")
        return archive[key]


def _text_array(path: Path, data: bytes) -> np.ndarray:
    try:
        text = data.decode("utf-8").replace(",", " ")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text file ({err}), expected rows 'x y z ...' or 'x,y,z,...'") from err
    return np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)


def read_point_file(path: Path, data: bytes) -> np.ndarray:
    """The xyz points (n, 3) float32 of a ``.npy`` / ``.npz`` / text file's bytes."""
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(io.BytesIO(data), allow_pickle=False)
        elif path.suffix.lower() == ".npz":
            array = _npz_array(path, data)
        else:
            array = _text_array(path, data)
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable {path.suffix} point file: {err}") from err
    return check_xyz(np.asarray(array), path, "the point array")


def require_trimesh(path: Path) -> ModuleType:
    """The trimesh module, or a ``DataError`` saying which extra installs it."""
    try:
        import trimesh
    except ImportError as err:
        raise DataError(f"{path}: reading {path.suffix} files needs trimesh: {MESH_EXTRA_HINT}") from err
    return trimesh


def read_mesh_file(path: Path, data: bytes, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """(num_points, 3) float32 points sampled uniformly on the surface of a mesh file's triangles, or the
    vertices (n, 3) of a point cloud (a file without faces)."""
    trimesh = require_trimesh(path)
    try:
        scene = trimesh.load_scene(io.BytesIO(data), file_type=path.suffix.lower()[1:], process=False)
        geometry = scene.to_geometry()
    except Exception as err:  # a third-party parser: any failure means an unreadable file
        raise DataError(f"{path}: not a readable {path.suffix} file: {type(err).__name__}: {err}") from err
    vertices = check_xyz(np.asarray(getattr(geometry, "vertices", np.empty((0, 3)))), path, "the vertex array")
    faces = np.asarray(getattr(geometry, "faces", np.empty((0, 3))))
    if len(faces) == 0:
        return vertices
    area = float(geometry.area)
    if not area > 0:
        raise DataError(f"{path}: {len(faces)} faces of total area {area}, expected a surface to sample points on")
    points, _ = trimesh.sample.sample_surface(geometry, num_points, seed=rng)
    return np.asarray(points, dtype=np.float32)


def read_cloud(path: str | Path, num_points: int, seed: int = 0) -> np.ndarray:
    """One file -> its cloud of ``num_points`` points (num_points, 3) float32, the same every time."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}, expected one of {' '.join(SUFFIXES)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err}") from err
    if not data:
        raise DataError(f"{path}: empty file, expected a point cloud or a mesh")
    rng = file_generator(data, seed)
    if path.suffix.lower() in MESH_SUFFIXES:
        points = read_mesh_file(path, data, num_points, rng)
    else:
        points = read_point_file(path, data)
    return resample(points, num_points, rng)

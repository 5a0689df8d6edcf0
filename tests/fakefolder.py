"""A small folder of your-own-data files (this is not a test module): meshes written by trimesh (.off, .ply,
.obj, .stl, .glb) and point files (.npy, .npz, .txt, .xyz, .pts) of a few shape classes, laid out as raw
ModelNet40 ships (``<class>/{train,test}/<class>_<i>.<ext>``) or in the other supported layouts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from pointjepa.datasets.point_files import SUFFIXES

MESHES: dict[str, Callable[[], trimesh.Trimesh]] = {
    "ball": lambda: trimesh.creation.icosphere(subdivisions=2),
    "box": lambda: trimesh.creation.box(),
    "cone": lambda: trimesh.creation.cone(radius=0.5, height=1.5, sections=24),
}
Layout = Literal["modelnet", "split_first", "unlabelled"]


def random_mesh(name: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """A ``MESHES[name]`` with a random anisotropic scale (0.7-1.3) and rotation."""
    mesh = MESHES[name]()
    mesh.apply_scale(rng.uniform(0.7, 1.3, size=3))
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
    return mesh


def modelnet_off(mesh: trimesh.Trimesh) -> str:
    """OFF text as many raw ModelNet40 files have it: the counts on the header line (``OFF8 12 0``)."""
    vertices = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in mesh.vertices)
    faces = "".join(f"3 {a} {b} {c}\n" for a, b, c in mesh.faces)
    return f"OFF{len(mesh.vertices)} {len(mesh.faces)} 0\n{vertices}{faces}"


def write_file(path: Path, mesh: trimesh.Trimesh, rng: np.random.Generator, modelnet_header: bool = False) -> Path:
    """Write ``mesh`` as ``path``'s type: a mesh file, or 150-400 points sampled on it as a point file."""
    suffix = path.suffix
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".off" and modelnet_header:
        path.write_text(modelnet_off(mesh))
    elif suffix in (".ply", ".off", ".obj", ".stl", ".glb"):
        mesh.export(path)
    else:
        points, _ = trimesh.sample.sample_surface(mesh, int(rng.integers(150, 400)), seed=rng)
        if suffix == ".npy":
            np.save(path, points)
        elif suffix == ".npz":
            np.savez(path, points=points, normals=rng.normal(size=points.shape))
        elif suffix == ".txt":
            np.savetxt(path, points, delimiter=",", fmt="%.6f")
        elif suffix == ".xyz":
            np.savetxt(path, np.column_stack([points, rng.random(len(points))]), fmt="%.6f")  # x y z intensity
        else:
            np.savetxt(path, points, fmt="%.6f")
    return path


def write_cloud_folder(
    root: str | Path,
    classes: tuple[str, ...] = ("ball", "box", "cone"),
    n_train: int = 10,
    n_test: int = 5,
    layout: Layout = "modelnet",
    seed: int = 0,
) -> Path:
    """``root/clouds``: per class and split, files ``<class>_<i>`` cycling through every supported type.

    ``modelnet``: ``<class>/{train,test}/``; ``split_first``: ``{train,test}/<class>/``; ``unlabelled``:
    ``{train,test}/`` (names still carry the class). The ``box`` ``.off`` files have ModelNet40's glued header.
    """
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "clouds"
    for name in classes:
        for split, count in (("train", n_train), ("test", n_test)):
            folder = {"modelnet": f"{name}/{split}", "split_first": f"{split}/{name}", "unlabelled": split}[layout]
            for i in range(count):
                path = data_dir / folder / f"{name}_{i:04d}{SUFFIXES[i % len(SUFFIXES)]}"
                write_file(path, random_mesh(name, rng), rng, modelnet_header=name == "box")
    return data_dir

"""Which files of a folder of your own clouds are in which split and class.

Splits come from ``train`` / ``test`` folders in the paths (raw ModelNet40: ``<class>/{train,test}/*.off``;
also ``{train,test}/<class>/*`` or ``{train,test}/*`` without classes) or from a split file. The class of a
file is the first folder of its path that is not a split folder; files without one are unlabelled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from pytorch_lightning.utilities import rank_zero_warn

from pointjepa.datasets.base import DataError, require_path
from pointjepa.datasets.point_files import SUFFIXES

SPLITS = ("train", "test")
LAYOUT_HINT = (
    "expected <class>/train/ and <class>/test/ folders (as raw ModelNet40), {train,test}/ folders, or a split_file "
    "(see DATASETS.md, 'Your own data')"
)
_SPLIT_LINE = re.compile(r"^(?P<path>.*?)[\s,]+(?P<split>train|test)$")


def list_cloud_files(root: str | Path) -> list[str]:
    """Paths (relative, '/'-separated, sorted) of the supported files under ``root``; hidden ones skipped."""
    root = Path(root)
    found = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        base = Path(folder).relative_to(root)
        found += [
            (base / name).as_posix()
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES
        ]
    return sorted(found)


def folder_class(relative_path: str) -> str | None:
    """The first folder of a relative path that is not a split folder (``train`` / ``test``), or ``None``."""
    return next((part for part in PurePosixPath(relative_path).parts[:-1] if part not in SPLITS), None)


def splits_from_folders(files: list[str], root: Path) -> dict[str, list[str]]:
    """split -> the files with that split folder in their path; files under none are left out (with a warning)."""
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    outside: list[str] = []
    for rel in files:
        found = [part for part in PurePosixPath(rel).parts[:-1] if part in SPLITS]
        if len(found) > 1:
            raise DataError(f"{root / rel}: path has both split folders {found}, expected one of train/ or test/")
        (splits[found[0]] if found else outside).append(rel)
    if not splits["train"] and not splits["test"]:
        raise DataError(f"{root}: no file under a train/ or test/ folder ({len(files)} files found); {LAYOUT_HINT}")
    if outside:
        rank_zero_warn(
            f"{root}: {len(outside)} file(s) outside train/ and test/ folders are left out, e.g. {outside[0]}"
        )
    return splits


def splits_from_file(split_file: str | Path, root: Path) -> dict[str, list[str]]:
    """split -> the files a split file lists, one ``<path relative to root> <train|test>`` per line
    (space, tab or comma before the split; blank lines and ``#`` comments skipped)."""
    path = require_path(split_file, "a split file of '<relative path> <train|test>' lines")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the split file: {err}") from err
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SPLIT_LINE.match(line)
        if match is None:
            raise DataError(f"{path}: line {number} {line!r}, expected '<path relative to {root}> <train|test>'")
        rel = PurePosixPath(match["path"].strip().strip("\"'").replace("\\", "/")).as_posix()
        if Path(rel).suffix.lower() not in SUFFIXES:
            raise DataError(f"{path}: line {number}: {rel} is not one of the supported types {' '.join(SUFFIXES)}")
        if not (root / rel).is_file():
            raise DataError(f"{path}: line {number}: {root / rel} not found")
        splits[match["split"]].append(rel)
    if not splits["train"] and not splits["test"]:
        raise DataError(f"{path}: lists no file, expected '<relative path> <train|test>' lines")
    return {split: sorted(set(rels)) for split, rels in splits.items()}


@dataclass
class FolderIndex:
    """The files of each split (relative to ``root``), their labels and the class names.

    ``label_names`` is empty for unlabelled data; every label is then 0.
    """

    root: Path
    files: dict[str, list[str]]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)


def index_folder(data_dir: str | Path, split_file: str | None = None, classes: list[str] | None = None) -> FolderIndex:
    """Index ``data_dir``: splits from its folders or ``split_file``, classes from the class folders, sorted by
    name, or ``classes`` (only those, in that order)."""
    root = require_path(data_dir, "a folder of point clouds or meshes")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; {LAYOUT_HINT}")
    if split_file is not None:
        splits = splits_from_file(split_file, root)
    else:
        files = list_cloud_files(root)
        if not files:
            raise DataError(f"{root}: no point cloud or mesh file ({' '.join(SUFFIXES)}); {LAYOUT_HINT}")
        splits = splits_from_folders(files, root)
    found = {rel: folder_class(rel) for rels in splits.values() for rel in rels}
    classed = {rel: name for rel, name in found.items() if name is not None}
    if not classed:
        if classes:
            raise DataError(f"{root}: classes={classes} given, but the files are not in class folders; {LAYOUT_HINT}")
        return FolderIndex(root, splits, {s: np.zeros(len(rels), dtype=np.int64) for s, rels in splits.items()})
    if len(classed) < len(found):
        unlabelled = next(rel for rel, name in found.items() if name is None)
        raise DataError(
            f"{root / unlabelled}: no class folder while {next(iter(classed))} has one; put every file under a "
            "<class>/ folder, or none for unlabelled data"
        )
    present = sorted(set(classed.values()))
    names = list(classes) if classes else present
    missing = [name for name in names if name not in present]
    if missing:
        raise DataError(f"{root}: no files of class(es) {missing} (found: {' '.join(present)})")
    label = {name: i for i, name in enumerate(names)}
    kept = {split: [rel for rel in rels if classed[rel] in label] for split, rels in splits.items()}
    labels = {split: np.array([label[classed[rel]] for rel in rels], dtype=np.int64) for split, rels in kept.items()}
    return FolderIndex(root, kept, labels, names)

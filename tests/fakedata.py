"""Tiny data sets in the exact published file formats, for tests (this is not a test module).

Each ``write_*(root, ...)`` creates the data set's directory under ``root`` (as it sits under
``data/``) and returns it, ready to pass as ``data_dir``. Point counts are small by default;
pass the published ones (8192 / 2048) to get full-size clouds.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np

from pointjepa.datasets.synsets import SHAPENET55_SYNSETS, SHAPENETPART_PARTS, SHAPENETPART_SYNSETS

MODELNET40_NAMES = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door dresser flower_pot "
    "glass_box guitar keyboard lamp laptop mantel monitor night_stand person piano plant radio range_hood sink "
    "sofa stairs stool table tent toilet tv_stand vase wardrobe xbox"
).split()


def _clouds(rng: np.random.Generator, n: int, num_points: int, channels: int = 3) -> np.ndarray:
    return rng.uniform(-1, 1, size=(n, num_points, channels)).astype(np.float32)


def write_shapenet55(
    root: str | Path, n_train: int = 6, n_test: int = 4, num_points: int = 256, npz: bool = False, seed: int = 0
) -> Path:
    """``ShapeNet55/``: ``shapenet_pc/<synset>-<id>.npy`` (num_points, 3), ``train.txt``, ``test.txt``,
    ``train_{25,50,75}.txt`` (leading parts of the train list) and, with ``npz``,
    ``shapenet_{train,test}.npz``. Item ``i`` of a list has label ``i % 55`` (test: ``(i + 3) % 55``)."""
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "ShapeNet55"
    (data_dir / "shapenet_pc").mkdir(parents=True, exist_ok=True)
    for split, n, shift in (("train", n_train, 0), ("test", n_test, 3)):
        labels = (np.arange(n) + shift) % len(SHAPENET55_SYNSETS)
        names = [f"{SHAPENET55_SYNSETS[label]}-{split}{i:05d}.npy" for i, label in enumerate(labels)]
        clouds = _clouds(rng, n, num_points)
        for name, cloud in zip(names, clouds):
            np.save(data_dir / "shapenet_pc" / name, cloud)
        (data_dir / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
        if split == "train":
            for k in (25, 50, 75):
                (data_dir / f"train_{k}.txt").write_text("".join(f"{name}\n" for name in names[: max(1, n * k // 100)]))
        if npz:
            np.savez(data_dir / f"shapenet_{split}.npz", data=clouds, labels=labels.astype(np.int64))
    return data_dir


def write_modelnet40(
    root: str | Path,
    n_train: int = 8,
    n_test: int = 4,
    num_points: int = 256,
    num_classes: int = 40,
    files_per_split: int = 2,
    seed: int = 0,
) -> Path:
    """``modelnet40_ply_hdf5_2048/``: ``ply_data_{train,test}<k>.h5`` (``data`` (n, num_points, 3) float32,
    ``label`` uint8 (n, 1), ``normal``, ``faceId``), ``shape_names.txt``, ``{train,test}_files.txt``.
    Item ``i`` of a split has label ``i % num_classes``."""
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "modelnet40_ply_hdf5_2048"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "shape_names.txt").write_text("".join(f"{name}\n" for name in MODELNET40_NAMES[:num_classes]))
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % num_classes).astype(np.uint8)[:, None]
        parts = np.array_split(np.arange(n), files_per_split)
        for k, index in enumerate(parts):
            with h5py.File(data_dir / f"ply_data_{split}{k}.h5", "w") as f:
                f["data"] = _clouds(rng, len(index), num_points)
                f["label"] = labels[index]
                f["normal"] = _clouds(rng, len(index), num_points)
                f["faceId"] = np.zeros((len(index), num_points), dtype=np.int32)
        listed = [f"data/modelnet40_ply_hdf5_2048/ply_data_{split}{k}.h5\n" for k in range(len(parts))]
        (data_dir / f"{split}_files.txt").write_text("".join(listed))
    return data_dir


def write_scanobjectnn(
    root: str | Path,
    split: str = "main_split",
    perturbed: bool = True,
    n_train: int = 6,
    n_test: int = 4,
    num_points: int = 256,
    seed: int = 0,
) -> Path:
    """``ScanObjectNN/<split>/{training,test}_objectdataset[_augmentedrot_scale75].h5`` with ``data``
    (n, num_points, 3) float32, ``label`` (n,) and ``mask`` (n, num_points). Item ``i`` has label ``i % 15``."""
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "ScanObjectNN"
    (data_dir / split).mkdir(parents=True, exist_ok=True)
    suffix = "_augmentedrot_scale75" if perturbed else ""
    for part, n in (("training", n_train), ("test", n_test)):
        with h5py.File(data_dir / split / f"{part}_objectdataset{suffix}.h5", "w") as f:
            f["data"] = _clouds(rng, n, num_points)
            f["label"] = (np.arange(n) % 15).astype(np.int64)
            f["mask"] = np.zeros((n, num_points), dtype=np.int64)
    return data_dir


def write_shapenetpart(
    root: str | Path,
    categories: tuple[str, ...] | None = None,
    n_train: int = 2,
    n_val: int = 1,
    n_test: int = 1,
    num_points: int = 100,
    seed: int = 0,
) -> Path:
    """``shapenetcore_partanno_segmentation_benchmark_v0_normal/``: ``synsetoffset2category.txt`` (all 16),
    ``train_test_split/shuffled_{train,val,test}_file_list.json``, the 16 ``<synset>/`` directories and,
    per category of ``categories`` (default: all), ``<synset>/<id>.txt`` shapes of ``num_points`` rows
    ``x y z nx ny nz part`` using that category's parts."""
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "shapenetcore_partanno_segmentation_benchmark_v0_normal"
    (data_dir / "train_test_split").mkdir(parents=True, exist_ok=True)
    (data_dir / "synsetoffset2category.txt").write_text("".join(f"{c}\t{s}\n" for c, s in SHAPENETPART_SYNSETS.items()))
    for synset in SHAPENETPART_SYNSETS.values():
        (data_dir / synset).mkdir(exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for category in categories or tuple(SHAPENETPART_SYNSETS):
        synset = SHAPENETPART_SYNSETS[category]
        for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            for i in range(n):
                model_id = f"{category.lower()}{split}{i:04d}"
                parts = rng.choice(SHAPENETPART_PARTS[category], (num_points, 1))
                rows = np.concatenate([_clouds(rng, 1, num_points, 6)[0], parts], axis=1)
                np.savetxt(data_dir / synset / f"{model_id}.txt", rows, fmt="%f")
                lists[split].append(f"shape_data/{synset}/{model_id}")
    for split, entries in lists.items():
        order = rng.permutation(len(entries))
        path = data_dir / "train_test_split" / f"shuffled_{split}_file_list.json"
        path.write_text(json.dumps([entries[i] for i in order]))
    return data_dir


def write_fewshot(
    root: str | Path,
    way: int = 5,
    shot: int = 10,
    folds: int = 1,
    num_points: int = 256,
    test_shot: int = 20,
    seed: int = 0,
) -> Path:
    """``ModelNetFewshot/<way>way_<shot>shot/<fold>.pkl`` for folds ``0..folds-1``: a pickled dict with
    ``train`` (way * shot) and ``test`` (way * test_shot) lists of ``(points float32 (num_points, 6),
    label in [0, way), ModelNet40 class)``. Call again for other way/shot settings."""
    rng = np.random.default_rng(seed)
    data_dir = Path(root) / "ModelNetFewshot"
    (data_dir / f"{way}way_{shot}shot").mkdir(parents=True, exist_ok=True)
    for fold in range(folds):
        classes = rng.choice(len(MODELNET40_NAMES), way, replace=False)
        fold_data = {}
        for split, k in (("train", shot), ("test", test_shot)):
            clouds = _clouds(rng, way * k, num_points, 6)
            fold_data[split] = [(cloud, i % way, int(classes[i % way])) for i, cloud in enumerate(clouds)]
        with open(data_dir / f"{way}way_{shot}shot" / f"{fold}.pkl", "wb") as f:
            pickle.dump(fold_data, f)
    return data_dir

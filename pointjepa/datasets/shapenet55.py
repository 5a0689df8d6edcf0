"""ShapeNet55 as released by Point-BERT: ``shapenet_pc/<synset>-<model id>.npy`` clouds (8192, 3)
listed in ``train.txt`` / ``test.txt`` (and ``train_25/50/75.txt``), 55 classes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence, get_args

import numpy as np
import torch
from torch.utils.data import Dataset

from pointjepa.datasets.base import DataError, PointCloudDataModule, require_path
from pointjepa.datasets.formats import PointCloudArrays, check_choice, check_labels, check_points, read_lines
from pointjepa.datasets.synsets import SHAPENET55_LABEL_NAMES, SHAPENET55_LABELS, SHAPENET55_SYNSETS

TrainSplit = Literal["train", "train_25", "train_50", "train_75"]
ShapeNet55Split = Literal[TrainSplit, "test"]
SPLITS: tuple[str, ...] = get_args(TrainSplit) + ("test",)
NPZ_SPLITS: tuple[str, ...] = ("train", "test")


def npz_path(data_dir: str | Path, split: str) -> Path:
    """Where ``process.shapenet_npz`` writes the in-memory form of ``split``."""
    return Path(data_dir) / f"shapenet_{split}.npz"


class ShapeNet55(Dataset):
    """The clouds of one split list, read from ``shapenet_pc/`` one ``.npy`` per item.

    Item ``i`` is ``(points float32 (8192, 3), label int)``; the label is the index of the
    file's synset among the 55 sorted ShapeNetCore v2 synsets.

    Args:
        data_dir: the ``ShapeNet55`` directory.
        split: which ``<split>.txt`` list to read.
    """

    def __init__(self, data_dir: str | Path, split: ShapeNet55Split = "train") -> None:
        check_choice("split", split, SPLITS)
        data_dir = require_path(data_dir, "the ShapeNet55 directory")
        list_path = data_dir / f"{split}.txt"
        names = read_lines(list_path, "one '<synset>-<model id>.npy' file name per line")
        self.labels = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            synset = name.split("-")[0]
            if synset not in SHAPENET55_LABELS:
                raise DataError(f"{list_path}: line {i + 1} {name!r} does not start with one of the 55 synset ids")
            self.labels[i] = SHAPENET55_LABELS[synset]
        pc_dir = require_path(data_dir / "shapenet_pc", "the ShapeNet55 point clouds '<synset>-<model id>.npy'")
        missing = sorted(set(names) - set(os.listdir(pc_dir)))
        if missing:
            raise DataError(f"{pc_dir}: {len(missing)} file(s) listed in {list_path} not found, e.g. {missing[0]}")
        self.files = [pc_dir / name for name in names]
        self._read(0)  # header check of one file: a broken download fails at setup, not mid-epoch

    def _read(self, index: int) -> np.ndarray:
        path = self.files[index]
        try:
            points = np.load(path)
        except (OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: sample {index}: not a readable .npy file: {e}") from e
        if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] != 3:
            raise DataError(f"{path}: sample {index}: array of shape {points.shape}, expected (N, 3) points")
        return points.astype(np.float32, copy=False)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self._read(index)), int(self.labels[index])


def load_shapenet55_npz(data_dir: str | Path, split: Literal["train", "test"]) -> PointCloudArrays:
    """The in-memory form ``shapenet_<split>.npz`` (``data`` (n, 8192, 3), ``labels`` (n,))."""
    path = require_path(
        npz_path(data_dir, split), "an .npz made by 'python -m pointjepa.datasets.process.shapenet_npz'"
    )
    try:
        with np.load(path) as f:
            missing = [k for k in ("data", "labels") if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array {missing[0]!r} (has {f.files}), expected 'data' and 'labels'")
            data, labels = f["data"], f["labels"]
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file: {e}") from e
    points = check_points(data, path)
    return PointCloudArrays(points, check_labels(labels, path, len(points), len(SHAPENET55_SYNSETS), "labels"))


class ShapeNet55DataModule(PointCloudDataModule):
    """ShapeNet55 (Point-BERT release), 41952 train / 10518 test clouds of 8192 points, 55 classes.

    Batches: ``points float32 (B, 8192, 3), labels int64 (B,)``; val (and test) = the test list.

    Args:
        data_dir: the ``ShapeNet55`` directory.
        split: training list: ``train`` or a ``train_25/50/75`` subset.
        batch_size: samples per batch.
        num_workers: loader workers (forced to 0 with ``in_memory``: items are array slices).
        in_memory: read ``shapenet_{train,test}.npz`` (made by ``process.shapenet_npz``)
            instead of the ``.npy`` files; only for ``split="train"``.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
    """

    def __init__(
        self,
        data_dir: str = "./data/ShapeNet55",
        split: TrainSplit = "train",
        batch_size: int = 512,
        num_workers: int = 8,
        in_memory: bool = False,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        check_choice("split", split, get_args(TrainSplit))
        if in_memory and split != "train":
            raise ValueError(f"split: in_memory=True reads shapenet_train.npz, expected split='train', got {split!r}")
        super().__init__(batch_size, 0 if in_memory else num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self.split = split
        self.in_memory = in_memory

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return  # loaded already
        if self.in_memory:
            self.train_dataset = load_shapenet55_npz(self.data_dir, "train")
            self.val_dataset = load_shapenet55_npz(self.data_dir, "test")
        else:
            self.train_dataset = ShapeNet55(self.data_dir, self.split)
            self.val_dataset = ShapeNet55(self.data_dir, "test")

    @property
    def label_names(self) -> Sequence[str]:
        return SHAPENET55_LABEL_NAMES

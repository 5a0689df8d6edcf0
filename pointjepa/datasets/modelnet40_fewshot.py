"""ModelNet40 few-shot (Point-BERT release): ``<way>way_<shot>shot/<fold>.pkl``, a pickled dict with
``train`` and ``test`` lists of ``(points float32 (8192, 6), label in [0, way), ModelNet40 class)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pointjepa.datasets.base import DataError, PointCloudDataModule, require_path
from pointjepa.datasets.formats import PointCloudArrays, check_labels, check_points
from pointjepa.utils.options import check_choice
from pointjepa.utils.safe_pickle import safe_load

WAYS: tuple[int, ...] = (5, 10)
SHOTS: tuple[int, ...] = (10, 20)
FOLDS: tuple[int, ...] = tuple(range(10))
TEST_SHOTS = 20


def fewshot_file(data_dir: str | Path, way: int, shot: int, fold: int) -> Path:
    """``<data_dir>/<way>way_<shot>shot/<fold>.pkl``."""
    return Path(data_dir) / f"{way}way_{shot}shot" / f"{fold}.pkl"


def load_fewshot(path: str | Path) -> dict[str, Any]:
    """The unpickled ``{"train": [...], "test": [...]}`` of a fold file: containers, numbers and numeric numpy
    arrays only (``safe_load``), so a hostile file cannot run code."""
    path = require_path(path, "a few-shot fold: a pickled dict with 'train' and 'test' lists")
    try:
        with open(path, "rb") as f:
            fold = safe_load(f)
    except Exception as e:  # unpickling can fail in many ways; all mean a broken (or hostile) file
        raise DataError(
            f"{path}: not a readable few-shot fold (a pickled dict with 'train' and 'test' lists): {e}"
        ) from e
    if not isinstance(fold, dict) or not all(isinstance(fold.get(k), list) for k in ("train", "test")):
        raise DataError(f"{path}: expected a pickled dict with 'train' and 'test' lists")
    return fold


def fewshot_arrays(items: list, path: Path, split: str, way: int) -> PointCloudArrays:
    """Stack ``(points (N, 6), label, _)`` items into xyz ``(n, N, 3)`` and labels ``(n,)``."""
    if not items:
        raise DataError(f"{path}: '{split}' is empty, expected (points, label, class) items")
    try:
        points = np.stack([np.asarray(item[0]) for item in items])
        labels = np.array([item[1] for item in items])
    except (TypeError, IndexError, KeyError, ValueError) as e:
        raise DataError(f"{path}: '{split}' items are not (points (N, 6), label, class) with equal N: {e}") from e
    points = check_points(points, path, split)
    return PointCloudArrays(points, check_labels(labels, path, len(points), way, f"{split} label"))


class ModelNet40FewShotDataModule(PointCloudDataModule):
    """ModelNet40 few-shot classification: ``way`` classes, ``way * shot`` training and
    ``way * 20`` test clouds of 8192 points (xyz; normals dropped) per fold.

    Batches: ``points float32 (B, 8192, 3), labels int64 (B,)`` with labels in ``[0, way)``.

    Args:
        data_dir: the ``ModelNetFewshot`` directory.
        way: classes per episode.
        shot: training samples per class.
        fold: which of the 10 folds.
        batch_size: samples per batch.
        num_workers: data loader worker processes.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
    """

    def __init__(
        self,
        data_dir: str = "./data/ModelNetFewshot",
        way: Literal[5, 10] = 5,
        shot: Literal[10, 20] = 10,
        fold: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        check_choice("way", way, WAYS)
        check_choice("shot", shot, SHOTS)
        check_choice("fold", fold, FOLDS)
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self.way = way
        self.shot = shot
        self.fold = fold

    def setup(self, stage: str | None = None) -> None:
        path = fewshot_file(self.data_dir, self.way, self.shot, self.fold)
        fold = load_fewshot(path)
        self.train_dataset = fewshot_arrays(fold["train"], path, "train", self.way)
        self.val_dataset = fewshot_arrays(fold["test"], path, "test", self.way)

    @property
    def label_names(self) -> Sequence[str]:
        return tuple(f"class {i}" for i in range(self.way))

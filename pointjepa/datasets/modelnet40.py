"""ModelNet40 ``modelnet40_ply_hdf5_2048``: ``ply_data_{train,test}<k>.h5`` with ``data`` (n, 2048, 3)
and ``label`` uint8 (n, 1); ``shape_names.txt`` names the 40 classes in label order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pointjepa.datasets.base import DataError, PointCloudDataModule, require_path
from pointjepa.datasets.formats import PointCloudArrays, load_h5_classification, read_lines


def modelnet40_files(data_dir: str | Path, split: Literal["train", "test"]) -> list[Path]:
    """The ``ply_data_<split>*.h5`` files of ``data_dir`` in name order."""
    data_dir = require_path(data_dir, "the modelnet40_ply_hdf5_2048 directory")
    files = sorted(data_dir.glob(f"ply_data_{split}*.h5"))
    if not files:
        raise DataError(f"{data_dir}: no ply_data_{split}*.h5 file (expected the ModelNet40 {split} split)")
    return files


class ModelNet40Ply2048DataModule(PointCloudDataModule):
    """ModelNet40 (PointNet's 2048-point HDF5 release), 9840 train / 2468 test clouds, 40 classes.

    Batches: ``points float32 (B, 2048, 3), labels int64 (B,)``; val (and test) = the test split.
    The whole set (about 300 MB) is read into memory at ``setup()``.

    Args:
        data_dir: the ``modelnet40_ply_hdf5_2048`` directory.
        batch_size: samples per batch.
        num_workers: data loader worker processes.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
    """

    def __init__(
        self,
        data_dir: str = "./data/modelnet40_ply_hdf5_2048",
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self._label_names: list[str] | None = None

    def _load(self, split: Literal["train", "test"]) -> PointCloudArrays:
        files = modelnet40_files(self.data_dir, split)
        return PointCloudArrays(*load_h5_classification(files, self.num_classes, f"ModelNet40 {split} data"))

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = self._load("train")
        self.val_dataset = self._load("test")

    @property
    def label_names(self) -> Sequence[str]:
        """The class names of ``shape_names.txt`` (read on first use)."""
        if self._label_names is None:
            self._label_names = read_lines(Path(self.data_dir) / "shape_names.txt", "the 40 class names, one per line")
        return self._label_names

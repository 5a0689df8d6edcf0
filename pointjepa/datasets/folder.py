"""Your own point clouds and meshes, in a folder laid out as raw ModelNet40 (``<class>/{train,test}/*.off``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from pointjepa.datasets.base import DataError, PointCloudDataModule
from pointjepa.datasets.cloud_cache import cache_path, read_clouds
from pointjepa.datasets.folder_index import LAYOUT_HINT, FolderIndex, index_folder
from pointjepa.datasets.formats import PointCloudArrays


class PointCloudFolderDataModule(PointCloudDataModule):
    """Point files (``.npy``, ``.npz``, ``.txt``, ``.xyz``, ``.pts``) and meshes or point clouds (``.ply``,
    ``.off``, ``.obj``, ``.stl``, ``.glb``, through the ``mesh`` extra: trimesh) under ``data_dir``.

    Splits: the ``train`` / ``test`` folders in the paths (``<class>/{train,test}/...`` as raw ModelNet40,
    ``{train,test}/<class>/...``, or ``{train,test}/...`` without classes), or ``split_file``. Classes: the
    first folder of a path that is not a split folder, labels in sorted name order; without class folders
    the data is unlabelled (every label 0, no ``num_classes``): enough for pretraining. Val (and test) =
    the test split.

    Every file gives ``num_points`` points, the same every time (seeded by the file's bytes and ``seed``):
    meshes are sampled uniformly on their surface, point files subsampled or filled up. All clouds are read
    at ``setup()`` (by ``num_workers`` processes) and batched from memory. An unreadable, empty or NaN file
    ends the setup with one ``DataError`` naming it.

    Batches: ``points float32 (B, num_points, 3), labels int64 (B,)``.

    Args:
        data_dir: the folder.
        num_points: points per cloud.
        split_file: lines ``<path relative to data_dir> <train|test>`` (space, tab or comma); only the files
            it lists are used.
        classes: the classes to use, in label order (default: every class folder, sorted by name).
        seed: mixed into every file's seed (another seed, other draws).
        cache: keep the clouds in one ``.npz`` (``.pointjepa-cache-<num_points>pts-seed<seed>.npz``, written
            atomically) and next time read only the files that are new or changed.
        cache_dir: where the cache goes (default: ``data_dir``).
        batch_size: samples per batch.
        num_workers: processes reading the files at setup (the loaders need none: the clouds are in memory).
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
    """

    def __init__(
        self,
        data_dir: str,
        num_points: int = 2048,
        split_file: str | None = None,
        classes: list[str] | None = None,
        seed: int = 0,
        cache: bool = False,
        cache_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = True,
    ) -> None:
        super().__init__(batch_size, 0, drop_last, pin_memory, persistent_workers=False)
        if num_points < 1:
            raise ValueError(f"num_points: expected a positive number of points, got {num_points}")
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        if classes is not None and (not classes or len(set(classes)) != len(classes)):
            raise ValueError(f"classes: expected distinct class folder names, got {classes}")
        self.data_dir = data_dir
        self.num_points = num_points
        self.split_file = split_file
        self.classes = classes
        self.seed = seed
        self.cache = cache
        self.cache_dir = cache_dir
        self.read_workers = num_workers
        self._index: FolderIndex | None = None

    def index(self) -> FolderIndex:
        """The files, labels and class names (listed on first use; nothing is read)."""
        if self._index is None:
            self._index = index_folder(self.data_dir, self.split_file, self.classes)
        return self._index

    @property
    def label_names(self) -> list[str]:
        """The class folder names in label order; empty for unlabelled data."""
        return self.index().label_names

    @property
    def num_classes(self) -> int:
        if not self.label_names:
            raise DataError(f"{self.data_dir}: no class folders, so no classes to train a classifier on; {LAYOUT_HINT}")
        return len(self.label_names)

    @property
    def train_files(self) -> list[str]:
        """The training files, relative to ``data_dir``, in item order."""
        return self.index().files["train"]

    @property
    def val_files(self) -> list[str]:
        """The test (= validation) files, relative to ``data_dir``, in item order."""
        return self.index().files["test"]

    def cache_file(self) -> Path | None:
        """The cache file, or ``None`` without ``cache``."""
        if not self.cache:
            return None
        return cache_path(self.cache_dir or self.data_dir, self.num_points, self.seed)

    def _read(self) -> np.ndarray:
        """The clouds of the training files, then of the test files: (n, num_points, 3) float32."""
        index = self.index()
        files = index.files["train"] + index.files["test"]
        return read_clouds(index.root, files, self.num_points, self.seed, self.read_workers, self.cache_file())

    def prepare_data(self) -> None:
        """With ``cache``: bring the cache up to date (Lightning calls this on one process per node first)."""
        if self.cache:
            self._read()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        index = self.index()
        if not index.files["train"] and stage in (None, "fit"):
            raise DataError(f"{index.root}: no training files; {LAYOUT_HINT}")
        points = self._read()
        n_train = len(index.files["train"])
        self.train_dataset = PointCloudArrays(points[:n_train], index.labels["train"])
        self.val_dataset = PointCloudArrays(points[n_train:], index.labels["test"])

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is not None and len(self.val_dataset) == 0:  # type: ignore[arg-type]
            raise DataError(f"{self.data_dir}: no test files (the test split is the validation split); {LAYOUT_HINT}")
        return super().val_dataloader()

"""Shared pieces of every data module: loader settings, split access and data errors."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from pointjepa.datasets.loader import EpochShuffleSampler, ResumableDataLoader


class DataError(ValueError):
    """A data set file or directory is missing or does not hold what the published format says."""


def require_path(path: str | Path, what: str) -> Path:
    """Return ``path`` as a ``Path`` or raise ``DataError`` naming it and what was expected there."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found (expected {what}). See DATASETS.md for the layout under data/.")
    return path


class PointCloudDataModule(pl.LightningDataModule):
    """Base data module: subclasses build ``train_dataset``/``val_dataset`` (and optionally
    ``test_dataset``) in ``setup()`` and describe their classes.

    Batches are ``points float32 (B, N, 3), labels int64 (B,)`` unless a subclass says otherwise.

    Args:
        batch_size: samples per batch.
        num_workers: data loader worker processes.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs (only when ``num_workers > 0``).
    """

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers: expected >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def label_names(self) -> Sequence[str]:
        raise NotImplementedError(f"{type(self).__name__} does not define label_names")

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for a data loader")
        if not isinstance(dataset, Sized):
            raise DataError(f"{type(self).__name__}: {type(dataset).__name__} has no length (not map-style)")
        size = len(dataset)
        if size == 0:
            raise DataError(f"{type(self).__name__}: the {'training' if train else 'validation'} split is empty")
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(size) if train else None,
            drop_last=train and self._drop_last_train_batch(size),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def _drop_last_train_batch(self, size: int) -> bool:
        """Drop the last training batch when asked, or when it would hold one sample (batch norm cannot
        train on a single sample); never when that would leave no batch at all."""
        if size < self.batch_size:
            if self.drop_last:
                rank_zero_warn(
                    f"{type(self).__name__}: {size} training samples < batch_size={self.batch_size}; "
                    "keeping the one incomplete batch instead of dropping it"
                )
            return False
        return self.drop_last or size % self.batch_size == 1

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset if self.test_dataset is not None else self.val_dataset, train=False)

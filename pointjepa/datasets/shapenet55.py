"""ShapeNet55 as released by Point-BERT: ``shapenet_pc/<synset>-<model id>.npy`` clouds (8192, 3)
listed in ``train.txt`` / ``test.txt`` (and ``train_25/50/75.txt``), 55 classes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast, get_args

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from pointjepa.datasets.base import DataError, PointCloudDataModule, require_path
from pointjepa.datasets.device_loader import DeviceBatchLoader, shard_size
from pointjepa.datasets.formats import PointCloudArrays, check_labels, check_points, read_lines
from pointjepa.datasets.loader import EpochShuffleSampler
from pointjepa.datasets.placement import InMemoryDevice, choose_serving_device
from pointjepa.datasets.synsets import SHAPENET55_LABEL_NAMES, SHAPENET55_LABELS, SHAPENET55_SYNSETS
from pointjepa.utils.options import check_choice

TrainSplit = Literal["train", "train_25", "train_50", "train_75"]
TrainFraction = Literal[25, 50, 75]
ShapeNet55Split = Literal[TrainSplit, "test"]
SPLITS: tuple[str, ...] = get_args(TrainSplit) + ("test",)
NPZ_SPLITS: tuple[str, ...] = ("train", "test")


def train_split_name(split: TrainSplit | TrainFraction | str | None) -> TrainSplit:
    """The training list a ``split`` option names: ``None`` -> ``train``, ``50`` or ``"50"`` -> ``train_50``,
    a list name as is."""
    name = "train" if split is None else f"train_{split}" if str(split) in ("25", "50", "75") else split
    allowed = (*get_args(TrainSplit), *get_args(TrainFraction), None)
    if name not in get_args(TrainSplit):
        raise ValueError(f"split: expected one of {', '.join(map(repr, allowed))}, got {split!r}")
    return cast(TrainSplit, name)  # checked just above


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
        split: training list: ``train`` (or ``None``), or a ``train_25/50/75`` subset, also given as
            the int 25, 50 or 75 as in the original.
        batch_size: samples per batch.
        num_workers: loader workers (forced to 0 with ``in_memory``: items are array slices).
        in_memory: read ``shapenet_{train,test}.npz`` (made by ``process.shapenet_npz``)
            instead of the ``.npy`` files; only for ``split="train"``.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
        in_memory_device: with ``in_memory``, where the arrays are served from. ``"cuda"``: uploaded
            once per fit to the trainer's (CUDA) root device and batched there by a
            ``DeviceBatchLoader`` (no per-step host work or copy); ``"cpu"``: host memory through a
            ``DataLoader``; ``"auto"``: ``"cuda"`` when the root device is a GPU with more than twice
            the arrays' size (train + test) free on every rank, else ``"cpu"``.
    """

    def __init__(
        self,
        data_dir: str = "./data/ShapeNet55",
        split: TrainSplit | TrainFraction | None = "train",
        batch_size: int = 512,
        num_workers: int = 8,
        in_memory: bool = False,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        in_memory_device: InMemoryDevice = "auto",
    ) -> None:
        split = train_split_name(split)
        check_choice("in_memory_device", in_memory_device, get_args(InMemoryDevice))
        if in_memory and split != "train":
            raise ValueError(f"split: in_memory=True reads shapenet_train.npz, expected split='train', got {split!r}")
        if in_memory_device == "cuda" and not in_memory:
            raise ValueError("in_memory_device: 'cuda' serves the .npz arrays from the GPU, it needs in_memory=True")
        super().__init__(batch_size, 0 if in_memory else num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self.split = split
        self.in_memory = in_memory
        self.in_memory_device = in_memory_device
        self._serving: tuple[pl.Trainer | None, torch.device | None] | None = None  # (for trainer, device)
        self._on_device: dict[bool, tuple[torch.device, torch.Tensor, torch.Tensor]] = {}  # train? -> arrays

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return  # loaded already
        if self.in_memory:
            self.train_dataset = load_shapenet55_npz(self.data_dir, "train")
            self.val_dataset = load_shapenet55_npz(self.data_dir, "test")
        else:
            self.train_dataset = ShapeNet55(self.data_dir, self.split)
            self.val_dataset = ShapeNet55(self.data_dir, "test")

    def teardown(self, stage: str) -> None:
        self._serving = None
        self._on_device.clear()  # frees the GPU copies; the next fit uploads again

    def serving_device(self) -> torch.device | None:
        """The device the in-memory arrays are batched on, or ``None`` for the host ``DataLoader``, as
        ``in_memory_device`` says; decided once per trainer (i.e. per fit: the upload then shrinks the
        free memory)."""
        if self._serving is None or self._serving[0] is not self.trainer:
            arrays = [d for d in (self.train_dataset, self.val_dataset) if isinstance(d, PointCloudArrays)]
            nbytes = sum(a.points.nbytes + a.labels.nbytes for a in arrays)
            device = choose_serving_device(self.in_memory_device, nbytes, self.trainer, type(self).__name__)
            self._serving = (self.trainer, device)
        return self._serving[1]

    def _arrays_on(
        self, device: torch.device, arrays: PointCloudArrays, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The train (or test) points and labels on ``device``, uploaded on first use only."""
        if train not in self._on_device or self._on_device[train][0] != device:
            points, labels = torch.from_numpy(arrays.points).to(device), torch.from_numpy(arrays.labels).to(device)
            self._on_device[train] = (device, points, labels)
        return self._on_device[train][1:]

    # In memory on a GPU it hands out a DeviceBatchLoader where the base class hands out a DataLoader: both are
    # iterables of batches with a resumable position, which is all Lightning asks of a loader.
    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader | DeviceBatchLoader:  # type: ignore[override]
        device = self.serving_device() if self.in_memory and dataset is not None else None
        if device is None or not isinstance(dataset, PointCloudArrays):
            return super()._loader(dataset, train)
        points, labels = self._arrays_on(device, dataset, train)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if not train:
            return DeviceBatchLoader(points, labels, device, self.batch_size, rank=rank, world_size=world_size)
        drop_last = self._drop_last_train_batch(shard_size(len(points), world_size))
        sampler = EpochShuffleSampler(len(points))
        return DeviceBatchLoader(points, labels, device, self.batch_size, sampler, drop_last, rank, world_size)

    @property
    def label_names(self) -> Sequence[str]:
        return SHAPENET55_LABEL_NAMES

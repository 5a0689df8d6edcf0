"""ScanObjectNN ``h5_files``: ``<split>/{training,test}_objectdataset[_augmentedrot_scale75].h5`` with
``data`` (n, 2048, 3) and ``label`` (n,), 15 classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from pointjepa.datasets.base import PointCloudDataModule, require_path
from pointjepa.datasets.formats import PointCloudArrays, load_h5_classification
from pointjepa.utils.options import check_choice

SCANOBJECTNN_LABEL_NAMES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip
ScanObjectNNSplit = Literal[
    "main_split", "main_split_nobg",
    "split1", "split1_nobg", "split2", "split2_nobg", "split3", "split3_nobg", "split4", "split4_nobg",
]  # fmt: skip
SPLITS: tuple[str, ...] = get_args(ScanObjectNNSplit)


def scanobjectnn_file(data_dir: str | Path, split: str, perturbed: bool, part: Literal["training", "test"]) -> Path:
    """``<data_dir>/<split>/<part>_objectdataset[_augmentedrot_scale75].h5`` (PB_T50_RS when perturbed)."""
    suffix = "_augmentedrot_scale75" if perturbed else ""
    return Path(data_dir) / split / f"{part}_objectdataset{suffix}.h5"


class ScanObjectNNDataModule(PointCloudDataModule):
    """ScanObjectNN real scans, 15 classes. Variants of the paper:

    - OBJ_BG: ``split="main_split", perturbed=False`` (2309 train / 581 test)
    - OBJ_ONLY: ``split="main_split_nobg", perturbed=False`` (2309 / 581)
    - PB_T50_RS: ``split="main_split", perturbed=True`` (11416 / 2882)

    Batches: ``points float32 (B, 2048, 3), labels int64 (B,)``; val (and test) = the test file.

    Args:
        data_dir: the ``ScanObjectNN`` directory (the unpacked ``h5_files``).
        split: sub-directory: ``main_split``, ``split1..4`` and their ``_nobg`` (no background) forms.
        perturbed: read the ``_augmentedrot_scale75`` files (PB_T50_RS).
        batch_size: samples per batch.
        num_workers: data loader worker processes.
        drop_last: drop the last incomplete training batch.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
    """

    def __init__(
        self,
        data_dir: str = "./data/ScanObjectNN",
        split: ScanObjectNNSplit = "main_split",
        perturbed: bool = True,
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        check_choice("split", split, SPLITS)
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self.split = split
        self.perturbed = perturbed

    def _load(self, part: Literal["training", "test"]) -> PointCloudArrays:
        require_path(Path(self.data_dir) / self.split, f"the ScanObjectNN split directory {self.split!r}")
        path = scanobjectnn_file(self.data_dir, self.split, self.perturbed, part)
        return PointCloudArrays(*load_h5_classification([path], self.num_classes, f"ScanObjectNN {part} data"))

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = self._load("training")
        self.val_dataset = self._load("test")

    @property
    def label_names(self) -> Sequence[str]:
        return SCANOBJECTNN_LABEL_NAMES

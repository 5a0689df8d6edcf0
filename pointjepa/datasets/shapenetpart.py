"""ShapeNetPart ``shapenetcore_partanno_segmentation_benchmark_v0_normal``: ``<synset>/<id>.txt`` shapes
with rows ``x y z nx ny nz part``, split by ``train_test_split/shuffled_{train,val,test}_file_list.json``;
16 categories, 50 parts."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pointjepa.datasets.base import DataError, PointCloudDataModule, require_path
from pointjepa.datasets.formats import read_lines
from pointjepa.datasets.synsets import SHAPENETPART_NUM_PARTS, SHAPENETPART_PARTS, SHAPENETPART_SYNSETS

ListName = Literal["train", "val", "test"]


def read_categories(data_dir: str | Path) -> list[str]:
    """Synset ids of ``synsetoffset2category.txt`` in file order (= category label), checked
    against the 16 published categories."""
    path = Path(data_dir) / "synsetoffset2category.txt"
    rows = [line.split() for line in read_lines(path, "16 lines '<Category>\\t<synset>'")]
    if [tuple(row) for row in rows] != list(SHAPENETPART_SYNSETS.items()):
        raise DataError(f"{path}: expected the 16 lines '<Category>\\t<synset>' {list(SHAPENETPART_SYNSETS.items())}")
    return [synset for _, synset in rows]


def read_split_list(data_dir: str | Path, name: ListName) -> set[tuple[str, str]]:
    """``(synset, model id)`` pairs of ``shuffled_<name>_file_list.json`` (entries ``shape_data/<synset>/<id>``)."""
    path = Path(data_dir) / "train_test_split" / f"shuffled_{name}_file_list.json"
    require_path(path, "a JSON list of 'shape_data/<synset>/<id>'")
    try:
        entries = json.loads(path.read_text())
        pairs = {tuple(entry.split("/")[1:]) for entry in entries}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: expected a JSON list of 'shape_data/<synset>/<id>' strings: {e}") from e
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise DataError(f"{path}: expected a non-empty JSON list of 'shape_data/<synset>/<id>' strings")
    return pairs


def shapenetpart_shapes(data_dir: str | Path, lists: Sequence[ListName]) -> list[tuple[int, Path]]:
    """``(category label, shape file)`` of the shapes named in ``lists``, category by category.

    Shapes are found by listing each category directory (the published ``_normal`` release
    lacks a few shapes that the JSON lists name), which gives 13998 train+val / 2874 test.
    """
    data_dir = require_path(data_dir, "the shapenetcore_partanno_segmentation_benchmark_v0_normal directory")
    wanted = set().union(*(read_split_list(data_dir, name) for name in lists))
    shapes = []
    for label, synset in enumerate(read_categories(data_dir)):
        category_dir = require_path(data_dir / synset, "a directory of '<model id>.txt' shapes")
        shapes += [(label, path) for path in sorted(category_dir.glob("*.txt")) if (synset, path.stem) in wanted]
    if not shapes:
        raise DataError(f"{data_dir}: none of the shapes of lists {list(lists)} found under <synset>/<id>.txt")
    return shapes


def read_shape(path: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Points float32 ``(P, 3)`` and part ids uint8 ``(P,)`` of a shape file (normals dropped)."""
    expected = "rows 'x y z nx ny nz part' with part ids in [0, 50)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: caught below
            rows = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: sample {index}: cannot parse (expected {expected}): {e}") from e
    if rows.shape[0] == 0 or rows.shape[1] != 7:
        raise DataError(f"{path}: sample {index}: {rows.shape[0]} rows of {rows.shape[1]} columns, expected {expected}")
    parts = rows[:, 6]
    if not np.all((parts == np.round(parts)) & (parts >= 0) & (parts < SHAPENETPART_NUM_PARTS)):
        raise DataError(f"{path}: sample {index}: bad part id in the last column, expected {expected}")
    return np.ascontiguousarray(rows[:, :3]), parts.astype(np.uint8)


Parsed = tuple[np.ndarray, np.ndarray] | DataError


def _as_is(item: object) -> object:
    """The loader's ``collate_fn`` with ``batch_size=None``: each item as it is."""
    return item


class _ShapeFiles(Dataset):
    """Parses shape files, so that a ``DataLoader`` can read them with several workers."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Parsed:
        try:
            return read_shape(self.files[index], index)
        except DataError as e:
            return e  # raised again by the parent process, without a worker traceback in its message


def parse_shapes(files: Sequence[Path], num_workers: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``read_shape`` of every file, in order, using ``num_workers`` processes."""
    parsed = []
    for item in DataLoader(_ShapeFiles(files), batch_size=None, num_workers=num_workers, collate_fn=_as_is):
        if isinstance(item, DataError):
            raise item
        parsed.append(item)
    return parsed


class ShapeNetPart(Dataset):
    """Part-labelled shapes, parsed once at construction into one compact array.

    Item ``i`` is ``(points float32 (num_points, 3), category int, seg int64 (num_points,))``: the
    shape resampled to ``num_points`` points drawn uniformly with replacement (without replacement
    when ``replace`` is off and the shape has enough points), anew at every access or, when
    ``deterministic``, with a generator seeded by ``i``.

    Args:
        shapes: ``(category label, shape file)`` pairs.
        num_points: points per item.
        deterministic: the same points for an item at every epoch.
        num_workers: processes parsing the text files.
        replace: draw with replacement even from shapes with enough points.
    """

    def __init__(
        self,
        shapes: Sequence[tuple[int, Path]],
        num_points: int = 2048,
        deterministic: bool = False,
        num_workers: int = 0,
        replace: bool = True,
    ) -> None:
        parsed = parse_shapes([path for _, path in shapes], num_workers)
        self.categories = np.array([label for label, _ in shapes], dtype=np.int64)
        self.points = np.concatenate([points for points, _ in parsed])
        self.parts = np.concatenate([parts for _, parts in parsed])
        self.offsets = np.cumsum([0] + [len(parts) for _, parts in parsed])
        self.num_points = num_points
        self.deterministic = deterministic
        self.replace = replace

    def __len__(self) -> int:
        return len(self.categories)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        start, size = int(self.offsets[index]), int(self.offsets[index + 1] - self.offsets[index])
        generator = torch.Generator().manual_seed(index) if self.deterministic else None
        if self.replace or size < self.num_points:
            choice = torch.randint(size, (self.num_points,), generator=generator)
        else:
            choice = torch.randperm(size, generator=generator)[: self.num_points]
        rows = choice.numpy() + start
        seg = torch.from_numpy(self.parts[rows].astype(np.int64))
        return torch.from_numpy(self.points[rows]), int(self.categories[index]), seg


class ShapeNetPartDataModule(PointCloudDataModule):
    """ShapeNetPart part segmentation, 13998 train+val / 2874 test shapes, 16 categories, 50 parts.

    Batches: ``points float32 (B, num_points, 3), category int64 (B,), seg int64 (B, num_points)``;
    train = train + val lists, val (and test) = the test list. Every shape is resampled to
    ``num_points`` with replacement, anew at every epoch, train and test alike. The text files are
    parsed once, at ``setup()``.

    Args:
        data_dir: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` directory.
        batch_size: samples per batch.
        num_workers: data loader worker processes (also used to parse the files).
        drop_last: drop the last incomplete training batch.
        num_points: points per shape after resampling.
        pin_memory: pin host memory for faster copies to the GPU.
        persistent_workers: keep workers alive between epochs.
        sample_with_replacement: draw the points with replacement; off: without replacement for
            shapes with at least ``num_points`` points.
        fixed_test_draw: draw each test shape's points once, with a generator seeded by its index,
            so that every evaluation sees the same points.
    """

    def __init__(
        self,
        data_dir: str = "./data/shapenetcore_partanno_segmentation_benchmark_v0_normal",
        batch_size: int = 32,
        num_workers: int = 0,
        drop_last: bool = True,
        num_points: int = 2048,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        sample_with_replacement: bool = True,
        fixed_test_draw: bool = False,
    ) -> None:
        if num_points < 1:
            raise ValueError(f"num_points: expected a positive integer, got {num_points}")
        super().__init__(batch_size, num_workers, drop_last, pin_memory, persistent_workers)
        self.data_dir = data_dir
        self.num_points = num_points
        self.sample_with_replacement = sample_with_replacement
        self.fixed_test_draw = fixed_test_draw

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return  # parsed already
        train = shapenetpart_shapes(self.data_dir, ("train", "val"))
        test = shapenetpart_shapes(self.data_dir, ("test",))
        replace, workers = self.sample_with_replacement, self.num_workers
        self.train_dataset = ShapeNetPart(train, self.num_points, num_workers=workers, replace=replace)
        self.val_dataset = ShapeNetPart(test, self.num_points, self.fixed_test_draw, workers, replace)

    @property
    def label_names(self) -> Sequence[str]:
        return tuple(SHAPENETPART_PARTS)

    @property
    def num_seg_classes(self) -> int:
        return SHAPENETPART_NUM_PARTS

    @property
    def category_to_parts(self) -> dict[str, list[int]]:
        """Category name -> its global part ids (``SHAPENETPART_PARTS``)."""
        return SHAPENETPART_PARTS

"""Data modules against the original Point-JEPA: ShapeNetPart draws (``datasets/ShapeNetPart.py``:
``np.random.choice(len, num_points, replace=True)`` at every ``__getitem__``, train and test) and
``ShapeNet55DataModule(split=k)`` reading ``train_<k>.txt`` (``datasets/ShapeNet55.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pointjepa.datasets import ShapeNet55DataModule, ShapeNetPartDataModule
from tests.fakedata import write_shapenet55, write_shapenetpart

LOADER = dict(batch_size=2, num_workers=0, pin_memory=False)


@pytest.fixture(scope="module")
def shapenetpart_dir(tmp_path_factory) -> Path:
    return write_shapenetpart(tmp_path_factory.mktemp("part"), ("Airplane", "Mug"), num_points=100)


def has_duplicates(points: torch.Tensor) -> bool:
    return len(torch.unique(points, dim=0)) < len(points)


def test_shapenetpart_test_draws_differ_between_epochs_and_repeat_points(shapenetpart_dir):
    # 64 of 100 points with replacement: a repeat is all but certain (P(none) = prod(1 - k/100) ~ 1e-10)
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), num_points=64, **LOADER)
    dm.setup()
    for dataset in (dm.train_dataset, dm.val_dataset):
        (p1, _, s1), (p2, _, _) = dataset[0], dataset[0]
        assert p1.shape == (64, 3) and s1.shape == (64,)
        assert not torch.equal(p1, p2)
        assert has_duplicates(p1)


def test_shapenetpart_val_loader_draws_anew_each_epoch(shapenetpart_dir):
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), num_points=64, **LOADER)
    dm.setup()
    loader = dm.val_dataloader()
    first, second = next(iter(loader)), next(iter(loader))
    assert torch.equal(first[1], second[1]) and not torch.equal(first[0], second[0])


def test_shapenetpart_without_replacement_option_has_no_repeats(shapenetpart_dir):
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), num_points=64, sample_with_replacement=False, **LOADER)
    dm.setup()
    assert not has_duplicates(dm.train_dataset[0][0]) and not has_duplicates(dm.val_dataset[0][0])


def test_shapenetpart_fixed_test_draw_option_repeats_the_same_points(shapenetpart_dir):
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), num_points=64, fixed_test_draw=True, **LOADER)
    dm.setup()
    (p1, _, s1), (p2, _, s2) = dm.val_dataset[1], dm.val_dataset[1]
    assert torch.equal(p1, p2) and torch.equal(s1, s2)
    assert not torch.equal(dm.train_dataset[1][0], dm.train_dataset[1][0])


@pytest.mark.parametrize("split", [50, "50", "train_50"])
def test_shapenet55_split_50_reads_train_50_list(tmp_path, split):
    data_dir = write_shapenet55(tmp_path, n_train=8, num_points=8)
    chosen = (data_dir / "train.txt").read_text().splitlines()[5]
    (data_dir / "train_50.txt").write_text(chosen + "\n")
    dm = ShapeNet55DataModule(str(data_dir), split=split, **LOADER)
    dm.setup("fit")
    assert dm.split == "train_50"
    assert [path.name for path in dm.train_dataset.files] == [chosen]


def test_shapenet55_split_none_is_the_full_train_list(tmp_path):
    data_dir = write_shapenet55(tmp_path, n_train=8, num_points=8)
    dm = ShapeNet55DataModule(str(data_dir), split=None, **LOADER)
    dm.setup("fit")
    assert dm.split == "train" and len(dm.train_dataset) == 8


@pytest.mark.parametrize("split", [10, "train_10", "test"])
def test_shapenet55_bad_split_lists_allowed_values(split):
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'train_25'.*25, 50, 75, None"):
        ShapeNet55DataModule(split=split)  # type: ignore[arg-type]

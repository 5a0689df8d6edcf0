"""The published-format data modules on tiny generated files, and their error messages."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pointjepa.datasets import (
    DataError,
    ModelNet40FewShotDataModule,
    ModelNet40Ply2048DataModule,
    ScanObjectNNDataModule,
    ShapeNet55DataModule,
    ShapeNetPartDataModule,
)
from pointjepa.datasets.process import shapenet_npz
from pointjepa.datasets.synsets import SHAPENET55_LABELS, SHAPENET55_SYNSETS, SHAPENETPART_PARTS
from tests.fakedata import write_fewshot, write_modelnet40, write_scanobjectnn, write_shapenet55, write_shapenetpart

LOADER = dict(batch_size=2, num_workers=0, pin_memory=False)


def first_batch(dm) -> list[torch.Tensor]:
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def assert_classification_batch(batch, num_points: int) -> None:
    points, labels = batch
    assert points.shape == (2, num_points, 3) and points.dtype == torch.float32
    assert labels.shape == (2,) and labels.dtype == torch.int64


# ShapeNet55


def test_shapenet55_batches_and_synset_labels(tmp_path):
    data_dir = write_shapenet55(tmp_path, n_train=6, n_test=4, num_points=32)
    dm = ShapeNet55DataModule(str(data_dir), **LOADER)
    assert_classification_batch(first_batch(dm), 32)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (6, 4)
    assert dm.num_classes == 55 and dm.label_names[0] == "airplane" and dm.label_names[-1] == "washer"
    names = (data_dir / "test.txt").read_text().split()
    assert [dm.val_dataset[i][1] for i in range(4)] == [SHAPENET55_LABELS[n.split("-")[0]] for n in names]


def test_shapenet55_synset_table_is_sorted_55():
    assert len(SHAPENET55_SYNSETS) == 55 and list(SHAPENET55_SYNSETS) == sorted(SHAPENET55_SYNSETS)


def test_shapenet55_split_selects_train_subset(tmp_path):
    data_dir = write_shapenet55(tmp_path, n_train=8, num_points=8)
    dm = ShapeNet55DataModule(str(data_dir), split="train_25", **LOADER)
    dm.setup("fit")
    assert len(dm.train_dataset) == 2 and len(dm.val_dataset) == 4


def test_shapenet55_unknown_split_lists_allowed():
    with pytest.raises(ValueError, match="train_25"):
        ShapeNet55DataModule(split="train_10")  # type: ignore[arg-type]


def test_shapenet55_in_memory_matches_npy_files(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=16)
    assert shapenet_npz.main(["--data_dir", str(data_dir)]) == 0
    files = ShapeNet55DataModule(str(data_dir), **LOADER)
    memory = ShapeNet55DataModule(str(data_dir), in_memory=True, **LOADER)
    files.setup(), memory.setup()
    for a, b in ((files.train_dataset, memory.train_dataset), (files.val_dataset, memory.val_dataset)):
        assert len(a) == len(b)
        assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(len(a)))
    with np.load(data_dir / "shapenet_train.npz") as f:
        assert f["data"].dtype == np.float32 and f["labels"].dtype == np.int64


def test_npz_builder_error_leaves_no_partial_file(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=16)
    bad = data_dir / "shapenet_pc" / (data_dir / "train.txt").read_text().split()[3]
    bad.write_bytes(b"not an npy file")
    assert shapenet_npz.main(["--data_dir", str(data_dir)]) == 1
    assert not list(data_dir.glob("*.npz*")) and not list(data_dir.glob(".*"))


def test_npz_builder_interrupt_leaves_no_partial_file(tmp_path, monkeypatch):
    data_dir = write_shapenet55(tmp_path, num_points=16)

    def interrupted_savez(file, **arrays):
        file.write(b"half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(shapenet_npz.np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        shapenet_npz.build_npz(data_dir, "train", progress=False)
    assert not list(data_dir.glob("*.npz*")) and not list(data_dir.glob(".*"))


def test_npz_builder_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        shapenet_npz.main(["--help"])
    assert exit_info.value.code == 0 and "--data_dir" in capsys.readouterr().out


# ModelNet40, ScanObjectNN, few-shot


def test_modelnet40_reads_every_h5_file(tmp_path):
    data_dir = write_modelnet40(tmp_path, n_train=8, n_test=5, num_points=24, files_per_split=3)
    dm = ModelNet40Ply2048DataModule(str(data_dir), **LOADER)
    assert_classification_batch(first_batch(dm), 24)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (8, 5)
    assert dm.num_classes == 40 and dm.label_names[0] == "airplane"
    assert [dm.val_dataset[i][1] for i in range(5)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("split", "perturbed"), [("main_split", True), ("main_split", False), ("main_split_nobg", False)]
)
def test_scanobjectnn_variants(tmp_path, split, perturbed):
    data_dir = write_scanobjectnn(tmp_path, split=split, perturbed=perturbed, n_train=6, n_test=3, num_points=16)
    dm = ScanObjectNNDataModule(str(data_dir), split=split, perturbed=perturbed, **LOADER)
    assert_classification_batch(first_batch(dm), 16)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (6, 3)
    assert dm.num_classes == 15 and dm.label_names[-1] == "toilet"


def test_scanobjectnn_reads_only_the_requested_variant(tmp_path):
    data_dir = write_scanobjectnn(tmp_path, perturbed=False)
    with pytest.raises(DataError, match="training_objectdataset_augmentedrot_scale75.h5"):
        ScanObjectNNDataModule(str(data_dir), perturbed=True, **LOADER).setup()


def test_scanobjectnn_unknown_split_lists_allowed():
    with pytest.raises(ValueError, match="main_split_nobg"):
        ScanObjectNNDataModule(split="split5")  # type: ignore[arg-type]


def test_fewshot_keeps_xyz_and_way_classes(tmp_path):
    data_dir = write_fewshot(tmp_path, way=10, shot=20, folds=2, num_points=16)
    dm = ModelNet40FewShotDataModule(str(data_dir), way=10, shot=20, fold=1, **LOADER)
    assert_classification_batch(first_batch(dm), 16)
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (200, 200)
    assert dm.num_classes == 10
    assert {dm.train_dataset[i][1] for i in range(200)} == set(range(10))


@pytest.mark.parametrize(("option", "kwargs"), [("way", {"way": 3}), ("shot", {"shot": 5}), ("fold", {"fold": 10})])
def test_fewshot_bad_option_lists_allowed(option, kwargs):
    with pytest.raises(ValueError, match=option):
        ModelNet40FewShotDataModule(**kwargs)


# ShapeNetPart


@pytest.fixture(scope="module")
def shapenetpart_dir(tmp_path_factory) -> Path:
    return write_shapenetpart(tmp_path_factory.mktemp("part"), n_train=2, n_val=1, n_test=1, num_points=100)


def test_shapenetpart_batches_and_parts(shapenetpart_dir):
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), **LOADER)
    points, category, seg = first_batch(dm)
    assert points.shape == (2, 2048, 3) and points.dtype == torch.float32
    assert category.shape == (2,) and category.dtype == torch.int64
    assert seg.shape == (2, 2048) and seg.dtype == torch.int64
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (16 * 3, 16)
    assert (dm.num_classes, dm.num_seg_classes) == (16, 50)
    assert list(dm.label_names) == list(SHAPENETPART_PARTS) and dm.category_to_parts["Table"] == [47, 48, 49]
    for _points, label, parts in (dm.val_dataset[i] for i in range(16)):
        assert set(parts.tolist()) <= set(SHAPENETPART_PARTS[dm.label_names[label]])


def test_shapenetpart_fixed_test_draw_is_deterministic(shapenetpart_dir):
    dm = ShapeNetPartDataModule(str(shapenetpart_dir), num_points=64, fixed_test_draw=True, **LOADER)
    dm.setup()
    (p1, _, s1), (p2, _, s2) = dm.val_dataset[3], dm.val_dataset[3]
    assert p1.shape == (64, 3) and torch.equal(p1, p2) and torch.equal(s1, s2)


def test_shapenetpart_parts_table_covers_50_parts():
    assert list(SHAPENETPART_PARTS)[:3] == ["Airplane", "Bag", "Cap"]
    assert sum(SHAPENETPART_PARTS.values(), []) == list(range(50))


# bad inputs: one DataError naming the file


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.*not found"):
        ModelNet40Ply2048DataModule(str(tmp_path / "nowhere"), **LOADER).setup()


def test_missing_split_file_is_named(tmp_path):
    data_dir = write_scanobjectnn(tmp_path)
    (data_dir / "main_split" / "test_objectdataset_augmentedrot_scale75.h5").unlink()
    with pytest.raises(DataError, match="test_objectdataset_augmentedrot_scale75.h5.*not found"):
        ScanObjectNNDataModule(str(data_dir), **LOADER).setup()


def test_missing_listed_cloud_is_named(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=8)
    name = (data_dir / "test.txt").read_text().split()[1]
    (data_dir / "shapenet_pc" / name).unlink()
    with pytest.raises(DataError, match=name):
        ShapeNet55DataModule(str(data_dir), **LOADER).setup()


def rewrite_h5(path: Path, **arrays: np.ndarray) -> None:
    path.unlink()
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"data": np.zeros((4, 16), np.float32), "label": np.zeros((4, 1), np.uint8)}, r"\(n, N, 3\)"),
        ({"data": np.zeros((4, 16, 3), np.float32)}, "no key 'label'"),
        ({"data": np.zeros((4, 16, 3), np.float32), "label": np.full((4, 1), 45, np.uint8)}, r"\[0, 40\)"),
        ({"data": np.zeros((4, 16, 3), np.float32), "label": np.zeros((3, 1), np.uint8)}, r"expected \(4,\)"),
        ({"data": np.zeros((0, 16, 3), np.float32), "label": np.zeros((0, 1), np.uint8)}, "n, N > 0"),
    ],
    ids=["shape", "key", "label-range", "label-count", "empty"],
)
def test_malformed_h5_is_named(tmp_path, arrays, expected):
    data_dir = write_modelnet40(tmp_path, num_points=16)
    rewrite_h5(data_dir / "ply_data_test1.h5", **arrays)
    with pytest.raises(DataError, match=f"ply_data_test1.h5.*{expected}"):
        ModelNet40Ply2048DataModule(str(data_dir), **LOADER).setup()


def test_not_an_h5_file_is_named(tmp_path):
    data_dir = write_modelnet40(tmp_path, num_points=16)
    (data_dir / "ply_data_train0.h5").write_text("oops")
    with pytest.raises(DataError, match="ply_data_train0.h5: not a readable HDF5"):
        ModelNet40Ply2048DataModule(str(data_dir), **LOADER).setup()


def test_empty_list_file_is_named(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=8)
    (data_dir / "test.txt").write_text("\n")
    with pytest.raises(DataError, match="test.txt: empty file"):
        ShapeNet55DataModule(str(data_dir), **LOADER).setup()


def test_unknown_synset_in_list_is_named(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=8)
    (data_dir / "test.txt").write_text("99999999-abc.npy\n")
    with pytest.raises(DataError, match="test.txt: line 1"):
        ShapeNet55DataModule(str(data_dir), **LOADER).setup()


def test_bad_cloud_names_sample_and_file(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=8)
    name = (data_dir / "train.txt").read_text().split()[2]
    np.save(data_dir / "shapenet_pc" / name, np.zeros((8, 2), np.float32))
    dm = ShapeNet55DataModule(str(data_dir), **LOADER)
    dm.setup()
    with pytest.raises(DataError, match=f"{name}: sample 2: .*expected \\(N, 3\\)"):
        dm.train_dataset[2]


def test_npz_without_labels_is_named(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=8, npz=True)
    np.savez(data_dir / "shapenet_test.npz", data=np.zeros((4, 8, 3), np.float32))
    with pytest.raises(DataError, match="shapenet_test.npz: no array 'labels'"):
        ShapeNet55DataModule(str(data_dir), in_memory=True, **LOADER).setup()


def test_empty_fewshot_list_is_named(tmp_path):
    data_dir = write_fewshot(tmp_path, num_points=8)
    path = data_dir / "5way_10shot" / "0.pkl"
    path.write_bytes(pickle.dumps({"train": [], "test": []}))
    with pytest.raises(DataError, match="0.pkl: 'train' is empty"):
        ModelNet40FewShotDataModule(str(data_dir), **LOADER).setup()


def test_fewshot_fold_pickled_by_numpy_1_loads(tmp_path):
    data_dir = write_fewshot(tmp_path, num_points=8)
    path = data_dir / "5way_10shot" / "0.pkl"
    fold = pickle.loads(path.read_bytes())
    fold["train"] = [(points, np.int64(label), cls) for points, label, cls in fold["train"]]
    old_names = pickle.dumps(fold, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in old_names and b"numpy.core.multiarray\nscalar" in old_names
    path.write_bytes(old_names)
    dm = ModelNet40FewShotDataModule(str(data_dir), **LOADER)
    dm.setup()
    np.testing.assert_array_equal(dm.train_dataset.points, np.stack([p[:, :3] for p, _, _ in fold["train"]]))


class RunsCommand:
    """Unpickles into ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("payload", ["system", "object_array"])
def test_hostile_fewshot_fold_is_refused_without_running_it(tmp_path, payload):
    data_dir = write_fewshot(tmp_path, num_points=8)
    path = data_dir / "5way_10shot" / "0.pkl"
    marker = tmp_path / "ran"
    evil = RunsCommand(f"touch {marker}")
    items = [(np.array([evil], dtype=object), 0, 0)] if payload == "object_array" else [(evil, 0, 0)]
    path.write_bytes(pickle.dumps({"train": items, "test": items}))
    with pytest.raises(DataError, match="0.pkl: not a readable few-shot fold.*(posix.system|only bool, integer)"):
        ModelNet40FewShotDataModule(str(data_dir), **LOADER).setup()
    assert not marker.exists()


def test_missing_fewshot_fold_is_named(tmp_path):
    data_dir = write_fewshot(tmp_path, num_points=8)
    with pytest.raises(DataError, match="5way_10shot/3.pkl: not found"):
        ModelNet40FewShotDataModule(str(data_dir), fold=3, **LOADER).setup()


@pytest.mark.parametrize(
    ("content", "expected"), [("", "0 rows"), ("0 0 0 0 0 1 77\n", "bad part id"), ("1 2 3\n", "3 columns")]
)
def test_malformed_shape_file_is_named(tmp_path, content, expected):
    data_dir = write_shapenetpart(tmp_path, categories=("Mug",), num_points=10)
    shape = sorted((data_dir / "03797390").glob("*.txt"))[0]
    shape.write_text(content)
    with pytest.raises(DataError, match=f"{shape.name}: sample .*{expected}"):
        ShapeNetPartDataModule(str(data_dir), **LOADER).setup()


def test_malformed_shape_file_in_parse_worker_is_named_without_traceback(tmp_path):
    data_dir = write_shapenetpart(tmp_path, categories=("Mug",), num_points=10)
    shape = sorted((data_dir / "03797390").glob("*.txt"))[0]
    shape.write_text("1 2 3\n")
    with pytest.raises(DataError) as error:
        ShapeNetPartDataModule(str(data_dir), **{**LOADER, "num_workers": 1}).setup()
    assert str(error.value).startswith(str(shape)) and "Traceback" not in str(error.value)


def test_missing_shapenetpart_list_is_named(tmp_path):
    data_dir = write_shapenetpart(tmp_path, categories=("Mug",), num_points=10)
    (data_dir / "train_test_split" / "shuffled_val_file_list.json").unlink()
    with pytest.raises(DataError, match="shuffled_val_file_list.json: not found"):
        ShapeNetPartDataModule(str(data_dir), **LOADER).setup()

"""PointCloudFolderDataModule on real files: readers of every type, layouts, classes, errors, the cache."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from pointjepa.datasets import DataError, PointCloudFolderDataModule, cloud_cache
from pointjepa.datasets.loader import ResumableDataLoader
from pointjepa.datasets.point_files import SUFFIXES, read_cloud
from pointjepa.datasets.process import check_folder
from tests.fakefolder import random_mesh, write_cloud_folder, write_file


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_cloud_folder(tmp_path_factory.mktemp("own"), n_train=10, n_test=5)


def folder_module(data_dir: Path, **options) -> PointCloudFolderDataModule:
    return PointCloudFolderDataModule(
        str(data_dir), **{"num_points": 64, "batch_size": 4, "pin_memory": False, **options}
    )


# ---- reading one file --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_type_reads_to_the_same_cloud_every_time_and_anywhere(tmp_path, suffix):
    rng = np.random.default_rng(1)
    path = write_file(tmp_path / "a" / f"shape{suffix}", random_mesh("cone", rng), rng)
    cloud = read_cloud(path, 256)
    assert cloud.shape == (256, 3) and cloud.dtype == np.float32 and np.isfinite(cloud).all()
    copy = tmp_path / "elsewhere" / f"renamed{suffix}"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    np.testing.assert_array_equal(read_cloud(copy, 256), cloud)  # seeded by the bytes, not the name
    assert np.abs(cloud).max() < 1.5  # the cone's own coordinates, not garbage


def test_meshes_are_sampled_on_the_surface_in_proportion_to_area(tmp_path):
    path = tmp_path / "slab.stl"
    trimesh.creation.box(extents=(1.0, 1.0, 10.0)).export(path)  # 40 of its 42 area units are the long sides
    points = read_cloud(path, 4096)
    on_surface = np.isclose(np.abs(points), [0.5, 0.5, 5.0], atol=1e-5).any(axis=1)
    caps = np.isclose(np.abs(points[:, 2]), 5.0, atol=1e-5).mean()
    assert on_surface.all() and 0.03 < caps < 0.07  # 2/42 = 0.048
    assert not np.array_equal(read_cloud(path, 4096, seed=1), points)  # another seed, another draw


def test_point_files_are_subsampled_or_filled_up_from_their_own_points(tmp_path):
    points = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    np.save(tmp_path / "p.npy", points)
    rows = {tuple(p) for p in points}
    fewer, more = read_cloud(tmp_path / "p.npy", 40), read_cloud(tmp_path / "p.npy", 250)
    assert {tuple(p) for p in fewer} <= rows and len({tuple(p) for p in fewer}) == 40
    assert {tuple(p) for p in more} == rows and len(more) == 250
    np.testing.assert_array_equal(read_cloud(tmp_path / "p.npy", 100), points)


def test_text_files_take_commas_or_whitespace_and_the_first_three_columns(tmp_path):
    (tmp_path / "a.txt").write_text("# x,y,z,nx,ny,nz\n1,2,3,0,0,1\n4,5,6,0,1,0\n")
    (tmp_path / "b.xyz").write_text("1 2 3 0.5\n4\t5 6 0.7\n")
    (tmp_path / "c.pts").write_text("1.0 2.0 3.0\n4.0 5.0 6.0\n")
    for name in ("a.txt", "b.xyz", "c.pts"):
        np.testing.assert_array_equal(read_cloud(tmp_path / name, 2), [[1, 2, 3], [4, 5, 6]])


def test_a_point_cloud_ply_gives_its_vertices(tmp_path):
    vertices = np.random.default_rng(0).random((50, 3))
    trimesh.PointCloud(vertices).export(tmp_path / "scan.ply")
    np.testing.assert_allclose(read_cloud(tmp_path / "scan.ply", 50), vertices, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.off", b"", "empty file"),
        ("garbage.ply", b"ply\nformat nonsense\n", "not a readable .ply file"),
        ("garbage.glb", b"glTF\x02\x00\x00\x00xx", "not a readable .glb file"),
        ("nan.off", b"OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "NaN or Inf|area 0"),  # trimesh 4.6: area 0
        ("flat.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "total area 0"),
        ("nothing.stl", b"solid x\nendsolid x\n", "holds no points"),
        ("nan.xyz", b"1 2 3\nnan 1 1\n", "NaN or Inf"),
        ("ragged.txt", b"1 2 3\n4 5\n", "not a readable .txt point file"),
        ("two.txt", b"1 2\n3 4\n", r"expected \(N, 3\) points"),
        ("words.pts", b"hello world\n", "not a readable .pts point file"),
    ],
)
def test_bad_files_give_one_error_naming_them(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_cloud(tmp_path / name, 16)
    assert str(error.value).startswith(str(tmp_path / name)) and "\n" not in str(error.value)


def test_bad_arrays_give_one_error_naming_them(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((10, 2)))
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    np.savez(tmp_path / "two.npz", a=np.zeros((5, 3)), b=np.zeros((5, 3)))
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "flat.npy").read_bytes()[:90])
    for name, message in [
        ("flat.npy", "shape"),
        ("none.npy", "holds no points"),
        ("two.npz", "one array or one named points"),
        ("objects.npy", "not a readable .npy"),  # never unpickled
        ("cut.npy", "not a readable .npy"),
    ]:
        with pytest.raises(DataError, match=message):
            read_cloud(tmp_path / name, 8)


def test_meshes_without_trimesh_name_the_extra(tmp_path, monkeypatch):
    trimesh.creation.box().export(tmp_path / "box.off")
    monkeypatch.setitem(sys.modules, "trimesh", None)  # import trimesh now fails
    with pytest.raises(DataError, match=r"box.off: reading .off files needs trimesh: pip install 'pointjepa\[mesh\]'"):
        read_cloud(tmp_path / "box.off", 16)
    np.save(tmp_path / "p.npy", np.ones((4, 3)))
    assert read_cloud(tmp_path / "p.npy", 4).shape == (4, 3)  # point files need no trimesh


# ---- layouts and classes -----------------------------------------------------------------------------------
def test_raw_modelnet40_layout_gives_classes_splits_and_batches(folder):
    data = folder_module(folder)
    assert data.label_names == ["ball", "box", "cone"] and data.num_classes == 3
    assert len(data.train_files) == 30 and len(data.val_files) == 15
    assert data.train_files[0] == "ball/train/ball_0000.npy" and data.val_files[-1] == "cone/test/cone_0004.pts"
    data.setup("fit")
    loader = data.train_dataloader()
    points, labels = next(iter(loader))
    assert isinstance(loader, ResumableDataLoader)
    assert points.shape == (4, 64, 3) and points.dtype == torch.float32 and labels.dtype == torch.int64
    assert data.val_dataset.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    np.testing.assert_array_equal(data.val_dataset.points[0], read_cloud(folder / data.val_files[0], 64))


def test_split_first_and_unlabelled_layouts(tmp_path):
    split_first = folder_module(write_cloud_folder(tmp_path / "a", n_train=2, n_test=1, layout="split_first"))
    assert (
        split_first.label_names == ["ball", "box", "cone"] and split_first.train_files[0] == "train/ball/ball_0000.npy"
    )
    unlabelled = folder_module(write_cloud_folder(tmp_path / "b", n_train=2, n_test=1, layout="unlabelled"))
    unlabelled.setup("fit")
    assert unlabelled.label_names == [] and set(unlabelled.train_dataset.labels) == {0}
    with pytest.raises(DataError, match="no class folders"):
        _ = unlabelled.num_classes


def test_classes_choose_and_order_the_labels(folder):
    data = folder_module(folder, classes=["cone", "ball"])
    data.setup("fit")
    assert data.num_classes == 2 and all(f.startswith(("cone/", "ball/")) for f in data.train_files)
    assert data.val_dataset.labels.tolist() == [1] * 5 + [0] * 5  # ball files come first (sorted paths)
    with pytest.raises(DataError, match=r"no files of class\(es\) \['chair'\]"):
        folder_module(folder, classes=["chair"]).index()


def test_split_file_lists_the_files_of_each_split(folder, tmp_path):
    split_file = tmp_path / "split.csv"
    split_file.write_text(
        "# path,split\nball/train/ball_0001.npz,train\nbox/test/box_0002.txt test\n\ncone/train/cone_0006.off,test\n"
    )
    data = folder_module(folder, split_file=str(split_file))
    assert data.train_files == ["ball/train/ball_0001.npz"] and data.val_files == [
        "box/test/box_0002.txt",
        "cone/train/cone_0006.off",
    ]
    assert data.label_names == ["ball", "box", "cone"]
    split_file.write_text("ball/train/ball_0001.npz validation\n")
    with pytest.raises(DataError, match=r"split.csv: line 1 .* expected '<path relative to"):
        folder_module(folder, split_file=str(split_file)).index()
    split_file.write_text("ball/train/missing.npy train\n")
    with pytest.raises(DataError, match="line 1: .*missing.npy not found"):
        folder_module(folder, split_file=str(split_file)).index()


def test_layout_errors_name_the_folder_and_the_expected_layout(tmp_path):
    with pytest.raises(DataError, match="nowhere: not found"):
        folder_module(tmp_path / "nowhere").index()
    (tmp_path / "flat").mkdir()
    np.save(tmp_path / "flat" / "a.npy", np.ones((4, 3)))
    with pytest.raises(DataError, match=r"no file under a train/ or test/ folder.*<class>/train/"):
        folder_module(tmp_path / "flat").index()
    mixed = tmp_path / "mixed"
    for rel in ("train/a.npy", "chair/train/b.npy"):
        (mixed / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(mixed / rel, np.ones((4, 3)))
    with pytest.raises(DataError, match=r"train/a.npy: no class folder while chair/train/b.npy has one"):
        folder_module(mixed).index()


def test_files_outside_split_folders_and_hidden_files_are_left_out(tmp_path):
    data_dir = write_cloud_folder(tmp_path, classes=("ball", "box"), n_train=2, n_test=1)
    (data_dir / "README.txt").write_text("ModelNet40, the raw release\n")
    np.save(data_dir / "ball" / "train" / ".hidden.npy", np.ones((4, 3)))
    with pytest.warns(
        UserWarning, match="1 file\\(s\\) outside train/ and test/ folders are left out, e.g. README.txt"
    ):
        files = folder_module(data_dir).train_files
    assert len(files) == 4


def test_a_bad_file_stops_setup_with_its_name(folder, tmp_path):
    data_dir = tmp_path / "clouds"
    shutil.copytree(folder, data_dir)
    np.save(data_dir / "box" / "test" / "box_0000.npy", np.full((10, 3), np.nan))
    with pytest.raises(DataError, match=r"box/test/box_0000.npy: the point array holds NaN"):
        folder_module(data_dir, num_workers=2).setup("fit")  # raised in a reading process, re-raised as is


def test_options_are_checked():
    for options, message in [
        (dict(num_points=0), "num_points"),
        (dict(classes=["a", "a"]), "classes"),
        (dict(num_workers=-1), "num_workers"),
    ]:
        with pytest.raises(ValueError, match=message):
            PointCloudFolderDataModule("x", **options)


# ---- reading processes and the cache -----------------------------------------------------------------------
def test_reading_processes_give_the_clouds_of_one_process(folder):
    one, two = folder_module(folder), folder_module(folder, num_workers=2)
    one.setup("fit")
    two.setup("fit")
    np.testing.assert_array_equal(one.train_dataset.points, two.train_dataset.points)


def test_cache_is_reused_and_refreshed_file_by_file(folder, tmp_path, monkeypatch):
    data_dir = tmp_path / "clouds"
    shutil.copytree(folder, data_dir)
    reads: list[str] = []
    read = cloud_cache.read_cloud
    monkeypatch.setattr(
        cloud_cache, "read_cloud", lambda path, *args: reads.append(Path(path).name) or read(path, *args)
    )

    def setup(**options) -> PointCloudFolderDataModule:
        data = folder_module(data_dir, cache=True, **options)
        data.prepare_data()
        data.setup("fit")
        return data

    first = setup()
    cache = data_dir / ".pointjepa-cache-64pts-seed0.npz"
    assert cache.is_file() and len(reads) == 45
    reads.clear()
    again = setup()
    assert reads == [] and np.array_equal(again.train_dataset.points, first.train_dataset.points)
    changed = data_dir / "cone" / "test" / "cone_0000.npy"
    np.save(changed, np.ones((70, 3)))
    os.utime(changed, ns=(1, 1))  # whatever the clock, a new modification time
    (data_dir / "ball" / "train" / "ball_0001.npz").unlink()
    refreshed = setup()
    assert reads == ["cone_0000.npy"] and len(refreshed.train_files) == 29
    np.testing.assert_array_equal(refreshed.val_dataset.points[10], np.ones((64, 3)))
    with np.load(cache) as archive:
        assert len(archive["files"]) == 44
    reads.clear()
    setup(num_points=32)  # other options: another cache file
    assert len(reads) == 44 and (data_dir / ".pointjepa-cache-32pts-seed0.npz").is_file()


def test_a_broken_cache_is_read_again_and_replaced(folder, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    broken = cache_dir / ".pointjepa-cache-64pts-seed0.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    data = folder_module(folder, cache=True, cache_dir=str(cache_dir))
    with pytest.warns(UserWarning, match="unreadable cache"):
        data.setup("fit")
    with np.load(broken) as archive:
        assert archive["points"].shape == (45, 64, 3)
    assert not any(p.name.endswith(".tmp") for p in cache_dir.iterdir())  # written through a renamed temporary


def test_check_folder_counts_the_classes_and_lists_every_bad_file(folder, tmp_path, capsys):
    assert check_folder.main([str(folder), "--num_points", "32"]) == 0
    out = capsys.readouterr().out
    assert "box        10       5" in out and "total      30      15" in out and "45 of 45 files read: all good" in out
    data_dir = tmp_path / "clouds"
    shutil.copytree(folder, data_dir)
    np.save(data_dir / "box" / "test" / "box_0000.npy", np.full((10, 3), np.nan))
    (data_dir / "cone" / "train" / "cone_0006.off").write_text("OFF\n")
    assert check_folder.main([str(data_dir), "--num_points", "32", "--num_workers", "2"]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bad file: ")]
    assert bad == [
        f"bad file: {data_dir / 'cone/train/cone_0006.off'}: not a readable .off file: "
        + bad[0].split(".off file: ")[1],
        f"bad file: {data_dir / 'box/test/box_0000.npy'}: the point array holds NaN or Inf coordinates "
        "(10 of 10 points)",
    ]
    assert check_folder.main([str(tmp_path / "nowhere")]) == 1
    assert "nowhere: not found" in capsys.readouterr().err

"""`python -m pointjepa.datasets.process.check`: its table and exit code on tiny generated sets."""

from __future__ import annotations

import pytest

from pointjepa.datasets.process import check
from tests.fakedata import write_fewshot, write_modelnet40, write_scanobjectnn, write_shapenet55, write_shapenetpart


@pytest.fixture
def tiny_expected(monkeypatch):
    """Expected counts of the tiny sets written by ``full_root``."""
    expected = {
        "shapenet55": (6, 4),
        "shapenet55_npz": (6, 4),
        "modelnet40": (8, 4, 40),
        "scanobjectnn_obj_bg": (6, 4),
        "scanobjectnn_obj_only": (6, 4),
        "scanobjectnn_pb_t50_rs": (6, 4),
        "shapenetpart": (3, 1),
        "modelnet40_fewshot": (2,),
    }
    monkeypatch.setattr(check, "EXPECTED", expected)
    monkeypatch.setattr(check, "FOLDS", (0,))
    monkeypatch.setattr(check, "SHOTS", (10,))
    return expected


@pytest.fixture
def full_root(tmp_path):
    write_shapenet55(tmp_path, num_points=8, npz=True)
    write_modelnet40(tmp_path, num_points=8)
    for split, perturbed in (("main_split", False), ("main_split_nobg", False), ("main_split", True)):
        write_scanobjectnn(tmp_path, split, perturbed, num_points=8)
    write_shapenetpart(tmp_path, categories=("Mug",), num_points=8)
    for way in (5, 10):
        write_fewshot(tmp_path, way=way, shot=10, num_points=8)
    return tmp_path


def test_check_reports_all_missing_with_exit_code_1(tmp_path, capsys):
    assert check.main(["--data_root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("missing") >= len(check.DATASETS)
    assert "ScanObjectNN PB_T50_RS" in out and "ModelNet40 few-shot" in out


def test_check_nothing_required_exits_0(tmp_path):
    assert check.main(["--data_root", str(tmp_path), "--require"]) == 0


def test_check_complete_sets_are_found(full_root, tiny_expected, capsys):
    assert check.main(["--data_root", str(full_root)]) == 0
    rows = {row.key: row for row in check.check(full_root)}
    assert {row.status for row in rows.values()} == {"found"}
    assert rows["shapenetpart"].counts == [("train+val", 3, 3), ("test", 1, 1)]
    assert "train 6/6, test 4/4" in capsys.readouterr().out


def test_check_counts_below_expected_are_incomplete(full_root, tiny_expected, monkeypatch):
    monkeypatch.setitem(tiny_expected, "modelnet40", (9840, 2468, 40))
    (full_root / "ShapeNet55" / "shapenet_test.npz").unlink()
    rows = {row.key: row for row in check.check(full_root)}
    assert rows["modelnet40"].status == "incomplete"
    assert rows["modelnet40"].counts[0] == ("train", 8, 9840)
    assert rows["shapenet55_npz"].status == "incomplete"
    assert check.main(["--data_root", str(full_root), "--require", "shapenet55", "scanobjectnn_pb_t50_rs"]) == 0
    assert check.main(["--data_root", str(full_root), "--require", "modelnet40"]) == 1


def test_check_malformed_file_is_incomplete_with_its_name(full_root, tiny_expected):
    bad = full_root / "ModelNetFewshot" / "10way_10shot" / "0.pkl"
    bad.write_bytes(b"garbage")
    row = {row.key: row for row in check.check(full_root)}["modelnet40_fewshot"]
    assert row.status == "incomplete" and str(bad) in row.detail

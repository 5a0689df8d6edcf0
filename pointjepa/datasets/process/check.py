"""Report which data sets under ``data/`` are present and complete.

    python -m pointjepa.datasets.process.check [--data_root ./data] [--require NAME ...]

Counts come from headers and lists (h5 shapes, npz headers, list lines, directory listings);
only the few-shot fold pickles are read whole, one at a time. Exit code 1 when a required data set
(default: all) is missing or incomplete.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pointjepa.datasets.base import DataError
from pointjepa.datasets.formats import count_lines, h5_len, npz_shapes
from pointjepa.datasets.modelnet40_fewshot import FOLDS, SHOTS, TEST_SHOTS, WAYS, fewshot_file, load_fewshot
from pointjepa.datasets.scanobjectnn import scanobjectnn_file
from pointjepa.datasets.shapenet55 import NPZ_SPLITS, npz_path
from pointjepa.datasets.shapenetpart import shapenetpart_shapes

Count = tuple[str, int, int]  # (what, found, expected)

# (train, test) items of the published downloads (ModelNet40 adds its class count; few-shot: fold files).
EXPECTED: dict[str, tuple[int, ...]] = {
    "shapenet55": (41952, 10518),
    "shapenet55_npz": (41952, 10518),
    "modelnet40": (9840, 2468, 40),
    "scanobjectnn_obj_bg": (2309, 581),
    "scanobjectnn_obj_only": (2309, 581),
    "scanobjectnn_pb_t50_rs": (11416, 2882),
    "shapenetpart": (13998, 2874),
    "modelnet40_fewshot": (len(WAYS) * len(SHOTS) * len(FOLDS),),
}


@dataclass
class Row:
    """One line of the report."""

    key: str
    path: Path
    status: Literal["found", "missing", "incomplete"]
    counts: list[Count]
    detail: str = ""


def _shapenet55(path: Path, expected: tuple[int, ...]) -> list[Count]:
    present = set(os.listdir(path / "shapenet_pc")) if (path / "shapenet_pc").is_dir() else set()
    counts = []
    for split, n in zip(("train", "test"), expected):
        listed = (path / f"{split}.txt").read_text().split() if (path / f"{split}.txt").is_file() else []
        counts.append((split, len(present.intersection(listed)), n))
    return counts


def _shapenet55_npz(path: Path, expected: tuple[int, ...]) -> list[Count]:
    counts = []
    for split, n in zip(NPZ_SPLITS, expected):
        file = npz_path(path, split)
        shapes = npz_shapes(file) if file.is_file() else {"data": (0,), "labels": (0,)}
        if "data" not in shapes or "labels" not in shapes or shapes["data"][:1] != shapes["labels"][:1]:
            raise DataError(f"{file}: expected arrays 'data' (n, 8192, 3) and 'labels' (n,), got {shapes}")
        counts.append((split, shapes["data"][0], n))
    return counts


def _modelnet40(path: Path, expected: tuple[int, ...]) -> list[Count]:
    counts = [
        (split, sum(h5_len(f) for f in path.glob(f"ply_data_{split}*.h5")), n)
        for split, n in zip(("train", "test"), expected)
    ]
    return counts + [("classes", count_lines(path / "shape_names.txt"), expected[2])]


def _scanobjectnn(split: str, perturbed: bool) -> Callable[[Path, tuple[int, ...]], list[Count]]:
    def count(path: Path, expected: tuple[int, ...]) -> list[Count]:
        files = [scanobjectnn_file(path, split, perturbed, part) for part in ("training", "test")]
        return [(part, h5_len(f) if f.is_file() else 0, n) for part, f, n in zip(("train", "test"), files, expected)]

    return count


def _shapenetpart(path: Path, expected: tuple[int, ...]) -> list[Count]:
    return [
        ("train+val", len(shapenetpart_shapes(path, ("train", "val"))), expected[0]),
        ("test", len(shapenetpart_shapes(path, ("test",))), expected[1]),
    ]


def _fewshot(path: Path, expected: tuple[int, ...]) -> list[Count]:
    complete = 0
    for way in WAYS:
        for shot in SHOTS:
            for fold in FOLDS:
                file = fewshot_file(path, way, shot, fold)
                if not file.is_file():
                    continue
                lists = load_fewshot(file)
                found, expected_items = (len(lists["train"]), len(lists["test"])), (way * shot, way * TEST_SHOTS)
                if found != expected_items:
                    raise DataError(f"{file}: {found} train/test items, expected {expected_items}")
                complete += 1
    return [("fold files", complete, expected[0])]


# key -> (title, directory under data_root, path whose absence means "missing", counter)
DATASETS: dict[str, tuple[str, str, str, Callable[[Path, tuple[int, ...]], list[Count]]]] = {
    "shapenet55": ("ShapeNet55", "ShapeNet55", "shapenet_pc", _shapenet55),
    "shapenet55_npz": ("ShapeNet55 npz (in_memory)", "ShapeNet55", "shapenet_train.npz", _shapenet55_npz),
    "modelnet40": ("ModelNet40", "modelnet40_ply_hdf5_2048", ".", _modelnet40),
    "scanobjectnn_obj_bg": (
        "ScanObjectNN OBJ_BG",
        "ScanObjectNN",
        "main_split/training_objectdataset.h5",
        _scanobjectnn("main_split", False),
    ),
    "scanobjectnn_obj_only": (
        "ScanObjectNN OBJ_ONLY",
        "ScanObjectNN",
        "main_split_nobg/training_objectdataset.h5",
        _scanobjectnn("main_split_nobg", False),
    ),
    "scanobjectnn_pb_t50_rs": (
        "ScanObjectNN PB_T50_RS",
        "ScanObjectNN",
        "main_split/training_objectdataset_augmentedrot_scale75.h5",
        _scanobjectnn("main_split", True),
    ),
    "shapenetpart": ("ShapeNetPart", "shapenetcore_partanno_segmentation_benchmark_v0_normal", ".", _shapenetpart),
    "modelnet40_fewshot": ("ModelNet40 few-shot", "ModelNetFewshot", ".", _fewshot),
}


def check(data_root: str | Path) -> list[Row]:
    """One ``Row`` per data set of ``DATASETS``."""
    rows = []
    for key, (_, directory, marker, counter) in DATASETS.items():
        path = Path(data_root) / directory
        if not (path / marker).exists():
            rows.append(Row(key, path, "missing", [], f"{path / marker} not found"))
            continue
        try:
            counts = counter(path, EXPECTED[key])
        except (DataError, OSError) as e:
            rows.append(Row(key, path, "incomplete", [], str(e)))
            continue
        complete = all(found == expected for _, found, expected in counts)
        rows.append(Row(key, path, "found" if complete else "incomplete", counts))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The report as a fixed-width text table."""
    lines = [("name", "data set", "status", "found / expected", "path")]
    for row in rows:
        counts = ", ".join(f"{what} {found}/{expected}" for what, found, expected in row.counts)
        lines.append((row.key, DATASETS[row.key][0], row.status, counts or "-", f"{row.path}  {row.detail}".rstrip()))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[4] for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pointjepa.datasets.process.check",
        description="Report which data sets are present and complete (see DATASETS.md).",
    )
    parser.add_argument("--data_root", default="./data", help="directory holding the data sets (default: %(default)s)")
    parser.add_argument(
        "--require", nargs="*", choices=list(DATASETS), default=list(DATASETS), metavar="NAME",
        help=f"data sets that must be complete for exit code 0 (default: all; empty: none): {', '.join(DATASETS)}",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rows = check(args.data_root)
    print(format_table(rows))
    failed = [row.key for row in rows if row.key in args.require and row.status != "found"]
    if failed:
        print(f"\nmissing or incomplete: {', '.join(failed)} (see DATASETS.md)")
        return 1
    print("\nall required data sets complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())

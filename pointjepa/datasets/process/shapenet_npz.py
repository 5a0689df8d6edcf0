"""Build ``shapenet_{train,test}.npz`` (the ``in_memory`` form of ShapeNet55) from the ``.npy`` files.

    python -m pointjepa.datasets.process.shapenet_npz [--data_dir ./data/ShapeNet55]

Each archive holds ``data`` float32 (n, 8192, 3) and ``labels`` int64 (n,) in list order. It is
written to a temporary file in the same directory and renamed into place, so an error or an
interrupt never leaves a half-written ``.npz`` behind.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from pointjepa.datasets.base import DataError
from pointjepa.datasets.shapenet55 import NPZ_SPLITS, ShapeNet55, npz_path
from pointjepa.utils.io import WriteError, atomic_write


def build_npz(data_dir: str | Path, split: Literal["train", "test"], progress: bool = True) -> Path:
    """Write ``shapenet_<split>.npz`` atomically and return its path."""
    dataset = ShapeNet55(data_dir, split)
    first = dataset[0][0]
    data = np.empty((len(dataset), *first.shape), dtype=np.float32)
    for i in tqdm(range(len(dataset)), desc=f"shapenet_{split}.npz", unit="cloud", disable=not progress):
        points = dataset[i][0].numpy()
        if points.shape != first.shape:
            expected = f"{tuple(first.shape)} like {dataset.files[0]}"
            raise DataError(f"{dataset.files[i]}: sample {i}: shape {tuple(points.shape)}, expected {expected}")
        data[i] = points
    return atomic_write(npz_path(data_dir, split), lambda f: np.savez(f, data=data, labels=dataset.labels))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pointjepa.datasets.process.shapenet_npz",
        description="Pack the ShapeNet55 .npy clouds into shapenet_{train,test}.npz (for --data.in_memory true).",
    )
    parser.add_argument("--data_dir", default="./data/ShapeNet55", help="ShapeNet55 directory (default: %(default)s)")
    parser.add_argument("--splits", nargs="+", choices=NPZ_SPLITS, default=list(NPZ_SPLITS), help="lists to pack")
    args = parser.parse_args(argv)
    try:
        for split in args.splits:
            print(f"wrote {build_npz(args.data_dir, split)}")
    except (DataError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

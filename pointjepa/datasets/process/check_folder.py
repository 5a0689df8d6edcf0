"""Check a folder of your own clouds before training: files per class and split, and every bad file.

    python -m pointjepa.datasets.process.check_folder data/ModelNet40 [--split_file F] [--num_workers 4]

Reads every file as ``PointCloudFolderDataModule`` does (without its cache) and, where the data module stops
at the first bad file, lists all of them, one line each. Exit code 1 when the layout or a file is bad.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from pointjepa.datasets.base import DataError
from pointjepa.datasets.cloud_cache import read_batches
from pointjepa.datasets.folder_index import SPLITS, FolderIndex, index_folder


def count_table(index: FolderIndex) -> str:
    """Files per class (rows) and split (columns), with a total row, as fixed-width text."""
    names = index.label_names or ["(unlabelled)"]
    counts = {split: Counter(index.labels[split].tolist()) for split in SPLITS}
    rows = [("class", *SPLITS)] + [(name, *(str(counts[s][i]) for s in SPLITS)) for i, name in enumerate(names)]
    rows.append(("total", *(str(len(index.files[s])) for s in SPLITS)))
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{row[0]:<{width}}  " + "  ".join(f"{cell:>6}" for cell in row[1:]) for row in rows)


def bad_files(index: FolderIndex, num_points: int, seed: int, workers: int) -> list[DataError]:
    """The error of every file that does not read, in file order."""
    paths = [index.root / rel for split in SPLITS for rel in index.files[split]]
    batches = read_batches(paths, num_points, seed, batch_size=16, workers=workers, desc=str(index.root))
    return [item for items in batches for item in items if isinstance(item, DataError)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pointjepa.datasets.process.check_folder", description=__doc__)
    parser.add_argument("data_dir", help="the folder (as PointCloudFolderDataModule's data_dir)")
    parser.add_argument("--split_file", default=None, help="lines '<relative path> <train|test>'")
    parser.add_argument("--classes", nargs="+", default=None, help="the classes to use, in label order")
    parser.add_argument("--num_points", type=int, default=2048, help="points per cloud (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=0, help="processes reading the files")
    args = parser.parse_args(argv)
    try:
        index = index_folder(args.data_dir, args.split_file, args.classes)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(count_table(index))
    errors = bad_files(index, args.num_points, args.seed, args.num_workers)
    for error in errors:
        print(f"bad file: {error}")
    total = sum(len(index.files[split]) for split in SPLITS)
    print(f"\n{total - len(errors)} of {total} files read" + (f", {len(errors)} bad" if errors else ": all good"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

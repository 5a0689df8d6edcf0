"""Reading many cloud files, in worker processes, and caching the clouds in one ``.npz``.

The cache holds, per file, its relative path, size and modification time next to its cloud. A file whose
size or time changed, or that is new, is read again; the cache is rewritten (atomically) whenever what it
holds differs from the files asked for. Its name carries the options that change the clouds
(``num_points``, ``seed``), and it records its format ``CACHE_VERSION``: other options never reuse it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from pointjepa.datasets.base import DataError
from pointjepa.datasets.point_files import read_cloud
from pointjepa.utils.io import atomic_write

#: Bumped whenever reading or sampling changes the clouds a file gives.
CACHE_VERSION = 1


class CloudFiles(Dataset):
    """Item ``i``: the cloud (num_points, 3) float32 of ``paths[i]``, or the ``DataError`` reading it raised
    (returned, so that a worker process hands it to the main process as it is)."""

    def __init__(self, paths: Sequence[Path], num_points: int, seed: int) -> None:
        self.paths, self.num_points, self.seed = list(paths), num_points, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray | DataError:
        try:
            return read_cloud(self.paths[index], self.num_points, self.seed)
        except DataError as err:
            return err


def read_batches(
    paths: Sequence[Path], num_points: int, seed: int = 0, batch_size: int = 32, workers: int = 0, desc: str = ""
) -> Iterator[list[np.ndarray | DataError]]:
    """``CloudFiles`` items of ``paths`` in order, a batch (list) at a time, read by ``workers`` processes,
    with a progress bar (``reading <desc>``)."""
    if not paths:
        return
    loader = DataLoader(
        CloudFiles(paths, num_points, seed), batch_size=batch_size, num_workers=workers, collate_fn=list
    )
    with tqdm(total=len(paths), desc=f"reading {desc}".rstrip(), unit="file", leave=False) as bar:
        for items in loader:
            bar.update(len(items))
            yield items


def iterate_clouds(
    paths: Sequence[Path], num_points: int, seed: int = 0, batch_size: int = 32, workers: int = 0, desc: str = ""
) -> Iterator[np.ndarray]:
    """Batches (B, num_points, 3) float32 of the clouds of ``paths`` in order (see ``read_batches``); the first
    unreadable file raises its ``DataError`` here, in the calling process."""
    for items in read_batches(paths, num_points, seed, batch_size, workers, desc):
        error = next((item for item in items if isinstance(item, DataError)), None)
        if error is not None:
            raise error
        yield np.stack(items)  # type: ignore[arg-type]


def cache_path(cache_dir: str | Path, num_points: int, seed: int) -> Path:
    """The cache file of the clouds of ``num_points`` points drawn with ``seed`` (hidden: data scans skip it)."""
    return Path(cache_dir) / f".pointjepa-cache-{num_points}pts-seed{seed}.npz"


def _stats(root: Path, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and modification times (ns) of ``root / file`` for each file: (n,) int64 each."""
    try:
        stats = [os.stat(root / rel) for rel in files]
    except OSError as err:
        raise DataError(f"{err.filename}: cannot read the file: {err.strerror}") from err
    return np.array([s.st_size for s in stats], dtype=np.int64), np.array([s.st_mtime_ns for s in stats], np.int64)


def _load_cache(path: Path, num_points: int) -> dict[str, np.ndarray]:
    """The arrays of a cache file, or ``{}`` when it is absent, unreadable or of another format."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        rank_zero_warn(f"{path}: unreadable cache ({err}); reading the files again")
        return {}
    expected = {"version", "files", "sizes", "mtimes", "points"}
    fits = arrays.get("points", np.empty(0)).shape[1:] == (num_points, 3)
    if set(arrays) != expected or int(arrays["version"]) != CACHE_VERSION or not fits:
        rank_zero_warn(f"{path}: a cache of another format; reading the files again")
        return {}
    return arrays


def read_clouds(
    root: str | Path,
    files: Sequence[str],
    num_points: int,
    seed: int = 0,
    workers: int = 0,
    cache: str | Path | None = None,
) -> np.ndarray:
    """The clouds (n, num_points, 3) float32 of ``root / file`` for each of ``files`` (relative paths).

    With ``cache`` (a cache file, see ``cache_path``) unchanged files come from it, the others are read,
    and the cache is rewritten when it did not hold exactly these files as they are now.
    """
    root = Path(root)
    sizes, mtimes = _stats(root, files)
    points = np.empty((len(files), num_points, 3), dtype=np.float32)
    cached = _load_cache(Path(cache), num_points) if cache is not None else {}
    todo = list(range(len(files)))
    if cached:
        where = {str(rel): i for i, rel in enumerate(cached["files"])}
        hits = [
            (i, where[rel])
            for i, rel in enumerate(files)
            if rel in where and (cached["sizes"][where[rel]], cached["mtimes"][where[rel]]) == (sizes[i], mtimes[i])
        ]
        for i, j in hits:
            points[i] = cached["points"][j]
        done = {i for i, _ in hits}
        todo = [i for i in todo if i not in done]
    start = 0
    for batch in iterate_clouds([root / files[i] for i in todo], num_points, seed, workers=workers, desc=root.name):
        points[todo[start : start + len(batch)]] = batch
        start += len(batch)
    if cache is not None and (todo or len(cached.get("files", ())) != len(files)):
        names = np.array(files, dtype=str)
        atomic_write(
            cache,
            lambda f: np.savez(f, version=CACHE_VERSION, files=names, sizes=sizes, mtimes=mtimes, points=points),
        )
        rank_zero_info(f"{cache}: cached the clouds of {len(files)} files ({len(todo)} read anew)")
    return points

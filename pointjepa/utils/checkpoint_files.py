"""Choosing a checkpoint file to resume from: complete or damaged, the newest readable one in a directory, and
the one line that says so. Nothing here unpickles a file."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

from pytorch_lightning.utilities import rank_zero_warn

from pointjepa.utils.checkpoint import CheckpointError
from pointjepa.utils.io import is_temporary

CHECKPOINT_SUFFIX = ".ckpt"


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with ``path`` as a PyTorch checkpoint, or ``None`` when it is a complete one.

    A structural check, nothing is unpickled: the file is a zip archive with a ``data.pkl`` record and every
    record matches its stored CRC-32 (a file cut short loses its zip directory; a damaged one fails the CRC).
    """
    path = Path(path)
    if not path.is_file():
        return "checkpoint file not found"
    if path.stat().st_size == 0:
        return "the file is empty"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "not a PyTorch checkpoint (no data.pkl inside)"
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"not a complete PyTorch checkpoint (truncated or corrupt?): {err}"
    if damaged is not None:
        return f"damaged: the record {damaged} does not match its checksum"
    return None


def checkpoint_files(directory: str | os.PathLike) -> list[Path]:
    """The ``*.ckpt`` files in ``directory``, newest first; ``atomic_write``'s temporary files are never among them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    files = [p for p in directory.iterdir() if p.suffix == CHECKPOINT_SUFFIX and not is_temporary(p) and p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def newest_readable_checkpoint(directory: str | os.PathLike, exclude: Iterable[Path] = ()) -> Path | None:
    """The most recently written complete checkpoint in ``directory`` (``checkpoint_problem`` finds nothing),
    skipping ``exclude``; ``None`` when there is none."""
    skipped = {Path(p).resolve() for p in exclude}
    for path in checkpoint_files(directory):
        if path.resolve() not in skipped and checkpoint_problem(path) is None:
            return path
    return None


def newest_checkpoint(paths: Iterable[Path]) -> Path | None:
    """The most recently modified of ``paths`` that exist (``None`` when none does)."""
    existing = [p for p in paths if p.is_file() and not is_temporary(p)]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def usable_resume_checkpoint(path: str | os.PathLike, fallback: bool = False) -> Path:
    """``path`` when it is a complete checkpoint. Otherwise, with ``fallback``, the newest readable checkpoint
    in the same directory, with a warning; without, or when there is none, a ``CheckpointError`` in one
    line: the file, what is wrong with it, and the newest readable checkpoint beside it."""
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    newest = newest_readable_checkpoint(path.parent, exclude=[path])
    if newest is None:
        raise CheckpointError(f"--ckpt_path {path}: {problem}; no readable checkpoint in {path.parent} either")
    if fallback:
        rank_zero_warn(f"--ckpt_path {path}: {problem}; resuming from the newest readable checkpoint, {newest}")
        return newest
    raise CheckpointError(
        f"--ckpt_path {path}: {problem}; the newest readable checkpoint in {path.parent} is {newest} "
        "(pass it to --ckpt_path, or add --resume_fallback true to resume from it)"
    )

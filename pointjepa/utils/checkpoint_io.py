"""Crash-safe checkpoint writing for Lightning: every checkpoint name holds a complete file or none."""

from __future__ import annotations

import os
from typing import IO, Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.utilities import rank_zero_info

from pointjepa.utils.checkpoint_files import CHECKPOINT_SUFFIX
from pointjepa.utils.io import atomic_write, remove_stale_temporaries


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes go through ``atomic_write``: the checkpoint is written to a
    temporary file in the target's own directory (``.<name>.<random>.tmp``), flushed and fsynced, renamed onto
    its name, and the directory is fsynced.

    Lightning's own writer stages the file through ``TMPDIR``; when that is another file system (node-local
    ``/tmp`` or tmpfs, checkpoints on shared storage) the final move is a copy into the checkpoint's name,
    and a kill during the copy leaves a truncated file there. The temporary names never end in ``.ckpt``, so
    neither ``--ckpt_path last`` nor a checkpoint search takes them for checkpoints; the first write into a
    directory removes the ones a killed run left there. Remote paths (fsspec URLs) keep Lightning's
    transactional upload. Loading is ``TorchCheckpointIO``'s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._swept: set[str] = set()

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (a ``WriteError`` naming ``path`` when the disk refuses it)."""
        fs, local = fsspec.core.url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        directory = os.path.dirname(os.path.abspath(local))
        if directory not in self._swept:
            self._swept.add(directory)
            removed = remove_stale_temporaries(directory, CHECKPOINT_SUFFIX) if os.path.isdir(directory) else []
            if removed:
                rank_zero_info(f"removed {len(removed)} unfinished checkpoint file(s) of a killed run in {directory}")
        atomic_write(local, lambda f: self.serialize(checkpoint, f))

    def serialize(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        """Write the checkpoint's bytes to an open binary file."""
        torch.save(checkpoint, file)

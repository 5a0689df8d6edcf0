"""Atomic, durable file writes: readers never see half a file; a failure, a kill or a power cut leaves the
old file or the complete new one under the name, never a part of one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: Suffix of the temporary files ``atomic_write`` writes next to their target (``.<name>.<random>.tmp``).
TEMPORARY_SUFFIX = ".tmp"


class WriteError(OSError):
    """A file could not be written (disk full, quota, file-size limit, permissions); nothing under its name
    changed."""


class _RecordingWriter:
    """A file object that remembers the first ``OSError`` of ``write``: some writers (``torch.save``) turn it
    into an unrelated error message."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like one of ``atomic_write``'s temporary files (never a finished file)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def remove_stale_temporaries(directory: str | os.PathLike, target_suffix: str) -> list[Path]:
    """Delete the temporary files that killed ``atomic_write`` calls left in ``directory`` for targets whose
    names end with ``target_suffix`` (``".ckpt"``); returns the removed paths."""
    removed = []
    for path in Path(directory).glob(f".*{target_suffix}.*{TEMPORARY_SUFFIX}"):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename or removal in ``directory`` durable (a no-op where the file system cannot sync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EISDIR):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary binary file in ``path``'s own directory, flush it to the disk, move it
    over ``path`` and sync the directory.

    The temporary file (``.<name>.<random>.tmp``) is on the same file system as ``path``, so the move is one
    atomic rename, whatever ``TMPDIR`` is. Missing parent directories are made; the file gets the usual
    permissions (``0o666`` minus the umask). Serves any writer of file objects:
    ``lambda f: torch.save(obj, f)``, ``lambda f: np.savez(f, ...)``, ``lambda f: figure.savefig(f, format="png")``,
    ``lambda f: f.write(text.encode())``.

    Raises:
        WriteError: the file system refused the data (full disk, quota, file-size limit); the message names
            ``path``. The temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    recorder: _RecordingWriter | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            recorder = _RecordingWriter(f)
            write(recorder)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = recorder.error if recorder is not None and recorder.error is not None else err
        if isinstance(cause, OSError) and not isinstance(cause, WriteError):
            reason = cause.strerror or str(cause)
            message = f"{path}: could not write the file ({reason}); what was there before is unchanged"
            raise WriteError(message) from err
        raise
    return path

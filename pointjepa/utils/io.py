"""Atomic file writes: readers never see half a file, an error or an interrupt leaves the old one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a temporary binary file next to ``path``, then move it over ``path``.

    Missing parent directories are made; the file gets the usual permissions (``0o666`` minus the umask).
    Serves any writer of file objects: ``lambda f: torch.save(obj, f)``, ``lambda f: np.savez(f, ...)``,
    ``lambda f: figure.savefig(f, format="png")``, ``lambda f: f.write(text.encode())``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

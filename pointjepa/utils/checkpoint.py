"""Reading checkpoints: weights-only unless the caller trusts the file, one-line errors for missing, damaged
or refused files, the original layout's extras, and NaN batch-norm running statistics."""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from pointjepa.utils.checkpoint_types import SAFE_GLOBALS

#: Entries of original Point-JEPA pretraining checkpoints that this implementation does not keep.
ORIGINAL_EXTRA_PREFIXES = ("teacher.online_model.",)
ORIGINAL_EXTRA_KEYS = ("teacher.initted", "mask_token")
#: The risk of opting in, for --help texts.
TRUST_RISK = (
    "a checkpoint is a pickle, and loading one that is not weights-only runs any code it carries: "
    "opt in only for a file whose source you trust"
)
#: The commands' opt-in and its --help text.
TRUST_OPTION = "--trust_checkpoint"
TRUST_HELP = f"load the checkpoint with full pickle instead of weights-only; {TRUST_RISK}"
#: Weights-only failures of a damaged file (the others are types or calls that the file asks for).
_DAMAGED = re.compile(r"Unsupported operand|String is too long|persistent")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs pickle code to load: a type or call outside the weights-only list.

    Args:
        path: the file.
        blocked: the type or call that the weights-only load refused (e.g. ``posix.system``).
        opt_in: how the user loads a file they trust, named in the message.
    """

    def __init__(self, path: str | os.PathLike, blocked: str, opt_in: str = "trusted=True") -> None:
        self.path, self.blocked, self.opt_in = Path(path), blocked, opt_in
        super().__init__(
            f"{path}: refused: the file needs pickle code to load ({blocked}), and pickle code can run any "
            f"command; if you trust where the file comes from, load it with {opt_in}"
        )

    def with_opt_in(self, opt_in: str) -> UnsafeCheckpointError:
        """The same refusal naming another opt-in (a command's option instead of the Python argument)."""
        return UnsafeCheckpointError(self.path, self.blocked, opt_in)


def allowed_checkpoint_types() -> AbstractContextManager[None]:
    """Inside, ``torch.load(weights_only=True)`` also builds the types of ``checkpoint_types.SAFE_GLOBALS``."""
    return torch.serialization.safe_globals(list(SAFE_GLOBALS))


@contextmanager
def opt_in_named(opt_in: str) -> Iterator[None]:
    """Inside, a refused checkpoint's error names ``opt_in`` (e.g. ``--trust_checkpoint``) as the way to load it."""
    try:
        yield
    except UnsafeCheckpointError as err:
        raise err.with_opt_in(opt_in) from None


def _refusal(path: Path, err: pickle.UnpicklingError) -> CheckpointError:
    """torch's weights-only failure -> ``UnsafeCheckpointError`` naming what it refused (``GLOBAL posix.system``
    -> ``posix.system``), or ``CheckpointError`` for a damaged pickle."""
    text = str(err)
    if name := re.search(r"GLOBAL (\S+)", text):
        return UnsafeCheckpointError(path, name.group(1))
    detail = text.split("WeightsUnpickler error:")[-1].removeprefix("Weights only load failed.").strip()
    first_line = detail.splitlines()[0].rstrip(".") if detail else text
    if _DAMAGED.search(first_line):
        return CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first_line}")
    return UnsafeCheckpointError(path, first_line)


def load_checkpoint(path: str | os.PathLike, trusted: bool = False, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file on the CPU, weights-only: tensors, plain Python values and the numpy scalars of
    ``checkpoint_types``. Raises ``UnsafeCheckpointError`` for a file that needs any other type (pickle code),
    ``CheckpointError`` naming the file when it is missing, empty, damaged or not a dict.

    ``trusted=True`` loads with full pickle, which runs any code the file carries: only for a file whose source
    the user trusts. ``mmap=True`` maps the tensors instead of reading them (a cheap check of a large file;
    zip-format files only).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        if trusted:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        else:
            with allowed_checkpoint_types():
                checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if trusted:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
        raise _refusal(path, err) from None
    except (ImportError, AttributeError) as err:  # only with trusted=True: a class the file names is not installed
        raise CheckpointError(f"{path}: the file needs Python code that is not installed: {err}") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    return checkpoint


def drop_original_extras(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``teacher.online_model.*``, ``teacher.initted`` and the unused top-level ``mask_token``."""
    return {
        k: v
        for k, v in state_dict.items()
        if k not in ORIGINAL_EXTRA_KEYS and not k.startswith(ORIGINAL_EXTRA_PREFIXES)
    }


def reset_nan_batchnorm_stats(module: nn.Module) -> list[str]:
    """Reset batch-norm running statistics holding a NaN: the whole ``running_mean`` to 0, the whole
    ``running_var`` to 1. Warns naming each reset buffer and returns their names."""
    reset = []
    for name, layer in module.named_modules():
        if not isinstance(layer, _BatchNorm):
            continue
        for stat, value in (("running_mean", 0.0), ("running_var", 1.0)):
            buffer = getattr(layer, stat)
            if buffer is not None and buffer.isnan().any():
                buffer.fill_(value)
                reset.append(f"{name}.{stat}")
                rank_zero_warn(f"{name}.{stat} holds NaN in the loaded weights: reset to {value:g}")
    return reset

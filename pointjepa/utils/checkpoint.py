"""Reading checkpoints: clear errors for missing or damaged files, the original layout's extras, and NaN
batch-norm running statistics."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

#: Entries of original Point-JEPA pretraining checkpoints that this implementation does not keep.
ORIGINAL_EXTRA_PREFIXES = ("teacher.online_model.",)
ORIGINAL_EXTRA_KEYS = ("teacher.initted", "mask_token")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file on the CPU, or raise ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
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

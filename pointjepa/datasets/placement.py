"""Where an in-memory split is batched: on the trainer's GPU or from host memory (``in_memory_device``)."""

from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

InMemoryDevice = Literal["auto", "cpu", "cuda"]


def choose_serving_device(
    choice: InMemoryDevice, nbytes: int, trainer: pl.Trainer | None, owner: str
) -> torch.device | None:
    """The device to batch ``nbytes`` of in-memory arrays on, or ``None`` for host memory.

    ``"cpu"``: host memory. ``"cuda"``: the trainer's root device, which must be a GPU. ``"auto"``: the
    root device when it is a GPU with more than twice ``nbytes`` free on every rank (logged under
    ``owner``'s name), else host memory.
    """
    if choice == "cpu":
        return None
    root = trainer.strategy.root_device if trainer is not None else None
    if choice == "cuda":
        if root is None or root.type != "cuda":
            where = "no Trainer is attached" if root is None else f"the trainer's root device is {root}"
            raise ValueError(
                f"in_memory_device: 'cuda' puts the arrays on the trainer's CUDA device, but {where}; "
                "use 'auto' or 'cpu', or train on a GPU"
            )
        return root
    if trainer is None or root is None or root.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(root)
    fits = trainer.strategy.reduce_boolean_decision(nbytes < free / 2, all=True)
    rank_zero_info(
        f"{owner}: in-memory arrays ({nbytes / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free on {root}) "
        + ("batched on the GPU" if fits else "served from host memory (in_memory_device='auto')")
    )
    return root if fits else None

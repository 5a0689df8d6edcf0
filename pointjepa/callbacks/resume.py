"""Exact resumption: random states and the training loader's position restored from the checkpoint."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loops import _FitLoop


def capture_rng_state() -> dict[str, Any]:
    """The global torch (CPU and CUDA), numpy and Python random states, as tensors and plain types
    (checkpoints load with ``weights_only=True``)."""
    # numpy's stubs type get_state() as its legacy=False dict; with the default legacy=True it is this tuple.
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),  # type: ignore[attr-defined]
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states only where as many devices exist)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def stateful_train_loaders(trainer: pl.Trainer | None) -> list[Any]:
    """The training loaders that save and restore their position (``state_dict`` / ``load_state_dict``)."""
    loaders = trainer.train_dataloader if trainer is not None else None
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    elif not isinstance(loaders, (list, tuple)):
        loaders = [loaders]
    return [dl for dl in loaders if hasattr(dl, "state_dict") and hasattr(dl, "load_state_dict")]


def start_next_epoch_afresh(fit_loop: _FitLoop) -> None:
    """After a resume from a checkpoint written at the end of an epoch's last training batch (a step
    checkpoint, a preemption), let the next epoch start as it does in an uninterrupted run.

    Lightning (2.6) counts the checkpoint's epoch as finished but keeps the fit loop's "restarted
    mid-epoch" stage through the next epoch, which then runs without ``on_train_epoch_start`` and is never
    counted as started. Every mid-epoch checkpoint of that epoch then reads as an end-of-epoch one: a
    resume from it restarts the batch count at 0 while the loader skips the batches already trained on,
    the epoch's last batch is never recognised, and the epoch-interval learning-rate step is lost.
    """
    epoch_loop = fit_loop.epoch_loop
    if (
        fit_loop.restarted_mid_epoch
        and epoch_loop.restarted_on_train_batch_end
        and epoch_loop.batch_progress.is_last_batch
    ):
        fit_loop.reset_restart_stage()


class ExactResume(pl.Callback):
    """Makes a run resumed with ``--ckpt_path`` continue exactly where it stopped, mid-epoch included.

    Stores the random states and the training loaders' positions with every checkpoint. The random
    states go back right before the first training batch after a resume, the positions at the start of
    training: Lightning restores the positions itself only when it sets up the loaders after the
    restore, which does not happen when ``configure_optimizers`` already asked for
    ``estimated_stepping_batches``.
    """

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self._rng: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = None

    def state_dict(self) -> dict[str, Any]:
        loaders = [dl.state_dict() for dl in stateful_train_loaders(self._trainer)]
        return {**capture_rng_state(), "loaders": loaders}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng = state_dict
        self._loader_states = list(state_dict.get("loaders", []))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start_next_epoch_afresh(trainer.fit_loop)
        for dl, state in zip(stateful_train_loaders(trainer), self._loader_states):
            dl.load_state_dict(state)
        self._loader_states = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._rng is not None:
            restore_rng_state(self._rng)
            self._rng = None

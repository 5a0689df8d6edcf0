"""Stop a run whose training loss turns NaN or Inf, naming the step, instead of training on garbage."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class NonFiniteLossGuard(pl.Callback):
    """Records the first optimizer step with a non-finite loss on the device and raises
    ``NonFiniteLossError`` when it looks: every ``check_every_n_steps`` steps (default: the trainer's
    ``log_every_n_steps``; every step on the CPU, where looking costs nothing) and before each
    epoch end and validation, so no checkpoint is written from poisoned weights.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        step = torch.tensor(trainer.global_step, device=loss.device)
        bad = ~torch.isfinite(loss.detach())
        if self._first_bad is None:
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        # Lightning's logger connector sets Trainer.log_every_n_steps, which the Trainer class does not declare.
        every = 1 if loss.device.type == "cpu" else (self.check_every_n_steps or trainer.log_every_n_steps or 1)  # type: ignore[attr-defined]
        if trainer.global_step % every == 0:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: pl.Trainer) -> None:
        if self._first_bad is None:
            return
        first = int(self._first_bad)
        if first >= 0:
            raise NonFiniteLossError(
                f"the training loss became NaN/Inf at step {first} (epoch {trainer.current_epoch}); stopped before "
                "training on it further. Check the input data for NaN/Inf, lower the learning rate, or try "
                "--trainer.precision 32-true / bf16-mixed"
            )

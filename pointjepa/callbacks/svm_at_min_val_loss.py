"""Reports the SVM probe accuracy at the epoch of minimum validation loss in the second half of training."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info


class SvmAccuracyAtMinValLoss(pl.Callback):
    """After each validation in the second half of training, keep the ``svm_val_acc_<name>`` values of
    the epoch with the lowest ``val_loss`` and log them as ``svm_val_acc_<name>_at_min_loss`` (plus
    ``best_val_loss``); print them when training ends.
    """

    def __init__(self) -> None:
        self.best_val_loss = math.inf
        self.best_epoch = -1
        self.accuracies: dict[str, float] = {}
        self._fresh_validation = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fresh_validation = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._fresh_validation:
            return
        self._fresh_validation = False
        max_epochs = trainer.max_epochs or 0
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is None or trainer.current_epoch < 0.5 * max_epochs:
            return
        svm = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("svm_val_acc_") and not k.endswith("_at_min_loss")
        }
        if float(val_loss) < self.best_val_loss:
            self.best_val_loss, self.best_epoch, self.accuracies = float(val_loss), trainer.current_epoch, svm
        pl_module.log("best_val_loss", self.best_val_loss, sync_dist=True)  # equal on every rank
        for name, accuracy in self.accuracies.items():
            pl_module.log(f"{name}_at_min_loss", accuracy, sync_dist=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_epoch >= 0:
            found = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracies.items()) or "no SVM validation configured"
            rank_zero_info(f"At the minimum val_loss {self.best_val_loss:.4f} (epoch {self.best_epoch}): {found}")

    def state_dict(self) -> dict[str, Any]:
        return {"best_val_loss": self.best_val_loss, "best_epoch": self.best_epoch, "accuracies": self.accuracies}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_val_loss = state_dict["best_val_loss"]
        self.best_epoch = state_dict["best_epoch"]
        self.accuracies = dict(state_dict["accuracies"])

"""Every run leaves a summary of its metrics, ``metrics.json``, whatever its loggers (W&B offline runs
keep theirs in a binary log; ``--trainer.logger false`` keeps none): ``pointjepa.eval.aggregate`` reads it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from pointjepa.utils.io import atomic_write


class MetricsSummary(pl.Callback):
    """Keeps the last, smallest and largest value of every scalar metric (``trainer.callback_metrics``) at
    the end of each validation, training epoch and fit, and writes ``{metric: {"last", "min", "max"}}``
    (W&B's summary layout) to ``filename`` in the trainer's ``log_dir``, atomically, from the first process.
    Resuming from a checkpoint continues the summary.

    Args:
        filename: name of the JSON file.
    """

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename
        self.summary: dict[str, dict[str, float]] = {}
        self._path: Path | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._path = Path(trainer.log_dir or trainer.default_root_dir) / self.filename  # log_dir: on every rank

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._update(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer)

    def _update(self, trainer: pl.Trainer) -> None:
        for name, tensor in trainer.callback_metrics.items():
            if tensor.numel() != 1 or not math.isfinite(value := float(tensor)):
                continue
            entry = self.summary.setdefault(name, {"last": value, "min": value, "max": value})
            entry.update(last=value, min=min(entry["min"], value), max=max(entry["max"], value))
        if trainer.is_global_zero and self.summary and self._path is not None:
            text = json.dumps(self.summary, indent=1, sort_keys=True)
            atomic_write(self._path, lambda f: f.write(text.encode()))

    def state_dict(self) -> dict[str, Any]:
        return {"summary": self.summary}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.summary = {name: dict(entry) for name, entry in state_dict["summary"].items()}

"""Upload a run's checkpoints to Weights & Biases as model artifacts when training ends.

The class path is the one the original project's W&B configs name::

    trainer:
      callbacks:
        - class_path: pointjepa.callbacks.wandb_checkpoint_logger.WandbModelCheckpointLogger
"""

from __future__ import annotations

import re
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only


def artifact_name(name: str) -> str:
    """A W&B artifact name (letters, digits, ``-``, ``_``, ``.``) made from ``name``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "checkpoint"


class WandbModelCheckpointLogger(pl.Callback):
    """At the end of training, log the best checkpoint of every ``ModelCheckpoint`` as artifact
    ``best_<monitor>`` (alias ``best``, with the score in its metadata) and, with ``log_last``, the last
    checkpoint as artifact ``last``, to the run of the first ``WandbLogger``.

    Without a ``WandbLogger`` it does nothing. Offline runs keep the artifacts with the run and upload
    them on ``wandb sync``.

    Args:
        log_best: log the best checkpoints.
        log_last: log ``last.ckpt``.
    """

    def __init__(self, log_best: bool = True, log_last: bool = True) -> None:
        self.log_best, self.log_last = log_best, log_last
        self.logged: dict[str, str] = {}

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        import wandb

        run = loggers[0].experiment
        files: dict[str, tuple[str, dict, list[str]]] = {}
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):  # other Checkpoint callbacks keep no best / last file
                continue
            if self.log_best and callback.best_model_path and callback.monitor:
                score = callback.best_model_score
                metadata = {
                    "monitor": callback.monitor,
                    "score": None if score is None else float(score),
                    "mode": callback.mode,
                }
                files.setdefault(callback.best_model_path, (f"best_{callback.monitor}", metadata, ["best"]))
            if self.log_last and callback.last_model_path:
                files.setdefault(callback.last_model_path, ("last", {"global_step": trainer.global_step}, ["last"]))
        for path, (name, metadata, aliases) in files.items():
            if not Path(path).is_file():
                continue
            artifact = wandb.Artifact(artifact_name(name), type="model", metadata=metadata)
            artifact.add_file(path)
            run.log_artifact(artifact, aliases=aliases)
            self.logged[artifact_name(name)] = path
            rank_zero_info(f"W&B: logged checkpoint {path} as model artifact {artifact_name(name)}")

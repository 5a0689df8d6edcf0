"""Callbacks used by the tests to interrupt runs."""

import pytorch_lightning as pl


class StopAtStep(pl.Callback):
    """Ends training after ``step`` optimizer steps, possibly mid-epoch (like a killed job that checkpointed)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
            trainer.save_checkpoint(f"{trainer.default_root_dir}/interrupted.ckpt")

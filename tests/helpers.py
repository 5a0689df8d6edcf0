"""Callbacks and plugins the tests put into command-line runs to interrupt them at chosen moments."""

import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import pytorch_lightning as pl

from pointjepa.callbacks.preemption import PreemptionCheckpoint
from pointjepa.utils.checkpoint_io import AtomicCheckpointIO

#: How long a paused run waits for the test to signal or kill it before giving up.
PATIENCE_S = 300


def wait_for(path: Path, process: subprocess.Popen, log: Path | None = None) -> None:
    """Until ``path`` exists; fails, showing the end of ``log``, when the process ends first."""
    deadline = time.monotonic() + PATIENCE_S
    while not path.exists():
        assert process.poll() is None, log.read_text()[-3000:] if log else f"the process ended ({process.returncode})"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


class StopAtStep(pl.Callback):
    """Ends training after ``step`` optimizer steps, possibly mid-epoch (like a killed job that checkpointed)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True
            trainer.save_checkpoint(f"{trainer.default_root_dir}/interrupted.ckpt")


class WaitForSignal(pl.Callback):
    """At the start of optimizer step ``step + 1`` (before its forward pass), writes ``<default_root_dir>/waiting``
    and waits until the run's ``PreemptionCheckpoint`` has received a signal: the test sends it then, mid-step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step != self.step:
            return
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        (preemption,) = [cb for cb in callbacks if isinstance(cb, PreemptionCheckpoint)]
        Path(trainer.default_root_dir, "waiting").touch()
        deadline = time.monotonic() + PATIENCE_S
        while not preemption.received and time.monotonic() < deadline:
            time.sleep(0.02)


class SignalDuringValidation(pl.Callback):
    """Sends SIGTERM to its own process when the first validation of training starts."""

    def on_validation_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)


class KillRankAtStep(pl.Callback):
    """SIGKILLs the process of global rank ``rank`` at the start of optimizer step ``step + 1``."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PausingCheckpointIO(AtomicCheckpointIO):
    """``AtomicCheckpointIO`` that stops half-way through writing its ``pause_at``-th checkpoint: it writes
    half of the bytes, touches ``marker`` and waits (for the test's ``kill -9``)."""

    def __init__(self, marker: str, pause_at: int = 1) -> None:
        super().__init__()
        self.marker, self.pause_at, self.saves = Path(marker), pause_at, 0

    def serialize(self, checkpoint: dict[str, Any], file: IO[bytes]) -> None:
        self.saves += 1
        if self.saves != self.pause_at:
            super().serialize(checkpoint, file)
            return
        buffer = io.BytesIO()
        super().serialize(checkpoint, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        self.marker.touch()
        time.sleep(PATIENCE_S)

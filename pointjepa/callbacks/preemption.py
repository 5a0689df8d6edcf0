"""Preemption: on SIGTERM (and on SLURM's requeue signal) save an exact-resume checkpoint of the step in
progress, requeue the SLURM job, and stop with a non-zero exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from pointjepa.utils.checkpoint_files import newest_checkpoint

#: Name of the checkpoint a preempted run leaves in its checkpoint directory.
PREEMPTION_FILENAME = "preempted.ckpt"


class Preempted(SystemExit):
    """Training stopped on a signal after saving its checkpoint; the exit code is 128 + the signal number."""


def checkpoint_directory(callback: ModelCheckpoint, trainer: pl.Trainer) -> str:
    """Where ``callback`` writes: its ``dirpath``, else, as ``ModelCheckpoint.setup`` resolves it before
    training, ``<save_dir>/<name>/<version>/checkpoints`` of the first logger or ``<default_root_dir>/checkpoints``."""
    if callback.dirpath is not None:
        return str(callback.dirpath)
    if trainer.loggers:
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), version, "checkpoints")
    return os.path.join(trainer.default_root_dir, "checkpoints")


def cluster_environment(trainer: pl.Trainer) -> ClusterEnvironment | None:
    """The trainer's cluster environment (single-device strategies keep it only in the accelerator connector,
    where Lightning's own signal handling finds it)."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None:
        environment = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    return environment


def slurm_job_id() -> str | None:
    """``<array job>_<task>`` for an array task, else ``SLURM_JOB_ID`` (``None`` outside SLURM)."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class PreemptionCheckpoint(pl.Callback):
    """Saves ``<checkpoint dir>/preempted.ckpt`` when the run is told to stop, then ends it with exit code
    128 + the signal (143 for SIGTERM).

    While training, SIGTERM (what SLURM, Kubernetes and ``torchrun`` send before SIGKILL) and, on SLURM,
    the environment's requeue signal (``#SBATCH --signal=SIGUSR1@90``) only mark the run. At the end of the
    step in progress (or of a validation in progress) every process agrees on the mark and the checkpoint
    is written: weights, EMA teacher, optimizer, schedules, mid-epoch loader positions and random states
    (``ExactResume``), so a resume from it continues bit-identically; the signal costs no finished step.
    On the requeue signal, and when the SLURM environment auto-requeues (Lightning's default), the first
    process then runs ``scontrol requeue <job id>``. The checkpoint directory is that of the first
    ``ModelCheckpoint`` (``default_root_dir`` without one). ``--ckpt_path last`` picks this file when it is
    newer than ``last.ckpt``.

    Lightning's own handlers stay in place outside training (setup, sanity check). Its SLURM handler would
    save from inside the signal handler, at any point of a step; this one saves between steps.

    Args:
        filename: the checkpoint's file name in the checkpoint directory.
    """

    def __init__(self, filename: str = PREEMPTION_FILENAME) -> None:
        self.filename = filename
        self.received: int = 0
        self._installed: dict[int, Any] = {}

    def checkpoint_path(self, trainer: pl.Trainer) -> Path:
        """Where the checkpoint goes."""
        callback = trainer.checkpoint_callback
        directory = checkpoint_directory(callback, trainer) if isinstance(callback, ModelCheckpoint) else None
        return Path(directory or trainer.default_root_dir) / self.filename

    def _requeue_signal(self, trainer: pl.Trainer) -> int | None:
        environment = cluster_environment(trainer)
        if isinstance(environment, SLURMEnvironment) and environment.requeue_signal is not None:
            return int(environment.requeue_signal)
        return None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = self.received or signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = 0
        if threading.current_thread() is not threading.main_thread():
            return
        requeue_signal = self._requeue_signal(trainer)
        for signum in {int(signal.SIGTERM), *([requeue_signal] if requeue_signal else [])}:
            self._installed[signum] = signal.signal(signum, self._handle)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, previous in self._installed.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._installed = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._stop_if_signalled(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._stop_if_signalled(trainer)

    def _agreed_signal(self, trainer: pl.Trainer) -> int:
        """The signal any process received (the largest number), 0 when none did; the same on every process."""
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return self.received
        flag = torch.tensor([self.received], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path, weights_only=False)
        name = signal.Signals(signum).name
        message = f"{name} received: saved {path} at step {trainer.global_step}; resume with --ckpt_path {path}"
        if trainer.is_global_zero and signum == self._requeue_signal(trainer):
            message += self._requeue(trainer)
        rank_zero_info(message)
        raise Preempted(128 + signum)

    def _requeue(self, trainer: pl.Trainer) -> str:
        """Requeue the SLURM job when its environment auto-requeues; a sentence for the log."""
        environment = cluster_environment(trainer)
        job = slurm_job_id()
        if not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue or job is None:
            return ""
        try:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        except FileNotFoundError:
            rank_zero_warn(f"SLURM job {job} not requeued: scontrol not found")
            return ""
        if result.returncode != 0:
            rank_zero_warn(f"SLURM job {job} not requeued: scontrol exited with {result.returncode}: {result.stderr}")
            return ""
        return f"; SLURM job {job} requeued"


def newest_last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """What ``--ckpt_path last`` resumes from: the most recently written of the ``last*.ckpt`` files of the
    trainer's ``ModelCheckpoint``s (Lightning's candidates) and the ``PreemptionCheckpoint`` files in their
    directories; ``None`` when there is none (or the directories are remote)."""
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    names = [cb.filename for cb in callbacks if isinstance(cb, PreemptionCheckpoint)]
    candidates: list[Path] = []
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        directory = Path(checkpoint_directory(callback, trainer))
        if not directory.is_dir():
            continue
        last, suffix = callback.CHECKPOINT_NAME_LAST, callback.FILE_EXTENSION
        candidates += [p for p in directory.iterdir() if p.name.startswith(last) and p.suffix == suffix]
        candidates += [directory / name for name in names]
    return newest_checkpoint(candidates)

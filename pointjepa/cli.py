"""The LightningCLI shared by every entry point: trainer defaults, logger, checkpoints, config saving."""

from __future__ import annotations

import contextlib
import netrc
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import lazy_instance
from lightning_fabric.plugins import CheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.plugins.layer_sync import LayerSync
from pytorch_lightning.utilities import rank_zero_info

from pointjepa.callbacks.lr_monitor import OptionalLearningRateMonitor
from pointjepa.callbacks.metrics_summary import MetricsSummary
from pointjepa.callbacks.nan_guard import NonFiniteLossGuard
from pointjepa.callbacks.preemption import PreemptionCheckpoint, newest_last_checkpoint
from pointjepa.callbacks.resume import ExactResume
from pointjepa.modules.sync_batchnorm import PortableSyncBatchNorm
from pointjepa.utils.checkpoint import (
    TRUST_RISK,
    CheckpointError,
    allowed_checkpoint_types,
    load_checkpoint,
    opt_in_named,
)
from pointjepa.utils.checkpoint_files import usable_resume_checkpoint
from pointjepa.utils.checkpoint_io import AtomicCheckpointIO
from pointjepa.utils.io import WriteError

WANDB_PROJECT = "point-jepa"
#: The opt-in of ``--ckpt_path`` for a file that needs pickle code (Lightning's own option).
RESUME_TRUST_OPTION = "--weights_only false"
#: Model options that a checkpoint's hyper-parameters never set: it names no other file to load, grants no trust.
NOT_FROM_CHECKPOINT = ("_instantiator", "pretrained_ckpt_path", "pretrained_ckpt_trusted")


def default_precision() -> str:
    """Mixed precision where a GPU is present (bf16 when supported), full precision on the CPU."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def wandb_logged_in() -> bool:
    """Whether W&B credentials exist (API key in the environment or in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def use_wandb_offline_without_login() -> None:
    """Runs log to W&B offline (sync later with ``wandb sync``) unless a login or WANDB_MODE says otherwise."""
    if "WANDB_MODE" not in os.environ and not wandb_logged_in():
        os.environ["WANDB_MODE"] = "offline"


def check_resume_checkpoint(path: str | None, trusted: bool = False, fallback: bool = False) -> str | None:
    """Fail early, in one line, when ``--ckpt_path`` is missing, empty or not a complete checkpoint (the file, what
    is wrong, and the newest readable checkpoint beside it; with ``fallback``, that one is returned instead, with
    a warning), or when it needs pickle code to load and is not ``trusted``. Lightning's names (``last``,
    ``best``, ...) pass unchanged."""
    if path is None or path in ("last", "best", "hpc", "registry"):
        return path
    usable = usable_resume_checkpoint(path, fallback)
    try:
        with opt_in_named(RESUME_TRUST_OPTION):
            load_checkpoint(usable, trusted=trusted, mmap=True)
    except CheckpointError as err:
        raise CheckpointError(f"--ckpt_path {err}") from err
    return str(usable)


def as_list(value: Any) -> list[Any]:
    """A trainer option that takes one item or a list (``callbacks``, ``plugins``) as a new list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry point; a user error (bad option, data, checkpoint, NaN loss) ends with one line on
    stderr and exit code 1 instead of a traceback. ``POINTJEPA_DEBUG=1`` shows the traceback."""
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    from pointjepa.callbacks.nan_guard import NonFiniteLossError
    from pointjepa.datasets.base import DataError

    user_errors = (
        ValueError,
        FileNotFoundError,
        CheckpointError,
        WriteError,
        DataError,
        NonFiniteLossError,
        MisconfigurationException,
    )
    try:
        main()
    except user_errors as err:
        if os.environ.get("POINTJEPA_DEBUG"):
            raise
        print(f"error: {err}\n(set POINTJEPA_DEBUG=1 to see the traceback)", file=sys.stderr)
        sys.exit(1)


class SaveConfigToWandb(SaveConfigCallback):
    """Saves ``config.yaml`` to the log directory and logs the resolved config to every W&B run's config."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if loggers:
            config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
            for logger in loggers:
                logger.log_hyperparams(config)


class PointJepaCLI(LightningCLI):
    """``LightningCLI(model, any LightningDataModule by class_path)`` with the project's trainer defaults.

    Args:
        model_class: the task's LightningModule.
        monitor: metric the "best" checkpoint follows.
        mode: ``min`` or ``max`` for ``monitor``.
        check_val_every_n_epoch: trainer default for validation frequency.
        link_num_classes: pass the data module's ``num_classes`` to ``model.num_classes``.
        wandb_group: W&B group of the default logger (the task name).
        extra_callbacks: callbacks always present besides the LR monitor, RNG-state saving, the preemption
            checkpoint and checkpointing.
        trainer_defaults, kwargs: forwarded to ``LightningCLI``.
    """

    def __init__(
        self,
        model_class: type[pl.LightningModule],
        monitor: str,
        mode: Literal["min", "max"],
        check_val_every_n_epoch: int = 1,
        link_num_classes: bool = False,
        wandb_group: str | None = None,
        extra_callbacks: list[Callback] | None = None,
        trainer_defaults: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        use_wandb_offline_without_login()
        self.monitor, self.mode, self.link_num_classes = monitor, mode, link_num_classes
        self.wandb_group = wandb_group
        defaults = {
            "default_root_dir": "artifacts",
            "accelerator": "auto",
            "precision": default_precision(),
            "log_every_n_steps": 10,
            "check_val_every_n_epoch": check_val_every_n_epoch,
            "callbacks": [
                OptionalLearningRateMonitor(logging_interval="epoch"),
                ExactResume(),
                PreemptionCheckpoint(),
                NonFiniteLossGuard(),
                MetricsSummary(),
                *(extra_callbacks or []),
            ],
            "logger": lazy_instance(WandbLogger, project=WANDB_PROJECT, group=wandb_group),
        }
        defaults.update(trainer_defaults or {})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", SaveConfigToWandb)
        kwargs.setdefault("seed_everything_default", 1)
        with allowed_checkpoint_types():  # Lightning's reads of --ckpt_path allow what the package's loader does
            super().__init__(
                model_class, pl.LightningDataModule, subclass_mode_data=True, trainer_defaults=defaults, **kwargs
            )

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Each parser's --help ends with what ``--weights_only false`` risks."""
        kwargs.setdefault(
            "epilog",
            f"Checkpoints are read weights-only (--weights_only true). --weights_only false reads --ckpt_path, and "
            f"--model.pretrained_ckpt_trusted true reads --model.pretrained_ckpt_path, with full pickle: {TRUST_RISK}.",
        )
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Not a Lightning callback key: ``instantiate_trainer`` decides whether it is added.
        parser.add_class_arguments(ModelCheckpoint, "checkpoint", fail_untyped=False, sub_configs=True)
        parser.set_defaults(
            {
                "checkpoint.monitor": self.monitor,
                "checkpoint.mode": self.mode,
                "checkpoint.save_last": True,
                "checkpoint.filename": "{epoch}-{step}-{" + self.monitor + ":.4f}",
            }
        )
        if self.link_num_classes:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument(
            "--resume_fallback",
            type=bool,
            default=False,
            help="When the --ckpt_path file is unreadable, resume from the newest readable checkpoint in its "
            "directory (with a warning) instead of stopping",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """``--weights_only`` defaults to true (torch's default, made explicit). Lightning reads ``--ckpt_path``
        right after parsing; check the file first for a clear error."""
        for subcommand in self.subcommands():
            with contextlib.suppress(KeyError):  # no subcommands (``run=False``): no --weights_only
                parser.set_defaults({f"{subcommand}.weights_only": True})
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            config["ckpt_path"] = check_resume_checkpoint(
                config.get("ckpt_path"), self._trusted(config), bool(config.get("resume_fallback"))
            )

    @staticmethod
    def _trusted(config: Any) -> bool:
        """Whether the subcommand's ``--weights_only false`` trusts ``--ckpt_path`` with full pickle."""
        return config.get("weights_only") is False

    def _parse_ckpt_path(self) -> None:
        """As Lightning's: the model config takes the hyper-parameters saved in ``--ckpt_path``, but read by the
        package's loader (Lightning's read is weights-only whatever ``--weights_only`` says) and without
        ``NOT_FROM_CHECKPOINT``."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        path = config.get("ckpt_path")
        if not path or not Path(path).is_file():
            return
        checkpoint = load_checkpoint(path, trusted=self._trusted(config), mmap=True)
        hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k not in NOT_FROM_CHECKPOINT}
        if hparams:
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def before_fit(self) -> None:
        """``--ckpt_path last`` resumes from the newest of the ``last`` checkpoints and the preemption
        checkpoint, checked as a named file is (their directory is known once the trainer exists)."""
        config = self.config_init["fit"]
        if config.get("ckpt_path") == "last" and (newest := newest_last_checkpoint(self.trainer)) is not None:
            config["ckpt_path"] = check_resume_checkpoint(
                str(newest), self._trusted(config), bool(config.get("resume_fallback"))
            )

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """The Trainer with the ``checkpoint:`` ModelCheckpoint after ``trainer.callbacks``, unless
        ``--trainer.enable_checkpointing false`` or ``trainer.callbacks`` (a published W&B config, say) already
        has a ModelCheckpoint on its metric. With ``sync_batchnorm`` the batch norms sync through
        ``PortableSyncBatchNorm`` (CPU DDP too). Checkpoints are written by ``AtomicCheckpointIO`` unless
        ``trainer.plugins`` names another ``CheckpointIO``."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        trainer = config["trainer"]
        callbacks = as_list(trainer.get("callbacks"))
        if trainer.get("enable_checkpointing") is not False:
            if any(isinstance(c, ModelCheckpoint) and c.monitor == self.monitor for c in callbacks):
                rank_zero_info(
                    f"trainer.callbacks has a ModelCheckpoint on {self.monitor}: the `checkpoint:` one is not added"
                )
            else:
                callbacks.append(config["checkpoint"])
        kwargs.setdefault("callbacks", callbacks)
        plugins = as_list(trainer.get("plugins"))
        if trainer.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
            plugins.append(PortableSyncBatchNorm())
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        kwargs.setdefault("plugins", plugins)
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        """W&B loggers without a ``save_dir`` write under the trainer's ``default_root_dir`` (``artifacts``);
        without a ``group`` / ``job_type`` they get the task's group and the first ``-c`` config's name."""
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        trainer = config.get("trainer")
        if trainer is None:
            return
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if hasattr(logger, "class_path") and logger.class_path.endswith("WandbLogger"):
                init_args = logger.init_args
                if init_args.get("save_dir") in (None, "."):
                    init_args["save_dir"] = str(Path(trainer.get("default_root_dir") or "artifacts"))
                if init_args.get("group") is None and self.wandb_group:
                    init_args["group"] = self.wandb_group
                if init_args.get("job_type") is None and config.get("config"):
                    init_args["job_type"] = Path(str(config["config"][0])).stem

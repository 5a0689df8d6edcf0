"""Shared pieces of the evaluation commands: arguments, the data module from a config, device, and split
loaders that go through a split in its stored order, so that a command's draws depend on its seed alone."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytorch_lightning as pl
import torch
import yaml
from jsonargparse import ArgumentParser, Namespace
from torch.utils.data import DataLoader

from pointjepa.datasets.device_loader import DeviceBatchLoader
from pointjepa.utils.checkpoint import TRUST_HELP, TRUST_OPTION

Split = Literal["train", "val", "test"]


def build_parser(description: str, prog: str, default_output: str) -> ArgumentParser:
    """Parser with ``--ckpt``, ``--trust_checkpoint``, ``--config`` / ``--data.*``, ``--split``, ``--batch_size``,
    ``--output``, ``--dpi``, ``--device``."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=str, required=True, help="checkpoint file")
    parser.add_argument(TRUST_OPTION, action="store_true", help=TRUST_HELP)
    parser.add_argument("--config", type=str | None, default=None, help="training config whose data: section to use")
    parser.add_subclass_arguments(
        pl.LightningDataModule, "data", required=False, help="data module (overrides --config)"
    )
    parser.add_argument("--split", type=Split, default="val", help="which split to draw the clouds from")
    parser.add_argument("--batch_size", type=int | None, default=None, help="override the data module's batch size")
    parser.add_argument("--output", type=str, default=default_output, help="PNG file to write")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of the PNG")
    parser.add_argument("--device", type=str, default="auto", help="'auto' (GPU when available), 'cpu', 'cuda:0', ...")
    return parser


def parse_data_args(parser: ArgumentParser, args: Sequence[str] | None) -> Namespace:
    """Parse ``args`` of a parser with ``--config`` and ``--data``: the config's ``data:`` section is the
    default of ``--data``, which ``--data.*`` options override; one of the two must give a data module."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config_path = pre.parse_known_args(args)[0].config
    if config_path is not None:
        if not Path(config_path).is_file():
            parser.error(f"--config {config_path}: file not found")
        try:
            config = yaml.safe_load(Path(config_path).read_text())
        except yaml.YAMLError as err:
            parser.error(f"--config {config_path}: not valid YAML ({err})")
        data = config.get("data") if isinstance(config, dict) else None
        if data is None:
            parser.error(f"--config {config_path}: no data: section")
        parser.set_defaults(data=data)
    cfg = parser.parse_args(args)
    if cfg.data is None:
        parser.error("give the data module with --config <training config> or --data.class_path ...")
    return cfg


def parse_with_data(parser: ArgumentParser, args: Sequence[str] | None) -> tuple[Namespace, pl.LightningDataModule]:
    """Parse ``args``; the data module comes from ``--config``'s ``data:`` section, overridden by ``--data.*``."""
    cfg = parse_data_args(parser, args)
    if cfg.batch_size is not None:
        if cfg.batch_size < 1:
            parser.error(f"--batch_size: expected a positive integer, got {cfg.batch_size}")
        cfg.data.init_args.batch_size = cfg.batch_size
    if cfg.dpi < 10:
        parser.error(f"--dpi: expected at least 10, got {cfg.dpi}")
    return cfg, parser.instantiate(cfg).data


def pick_device(name: str) -> torch.device:
    """``auto`` -> the GPU when one is available, else the CPU; anything else as ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device: {err}") from err


def split_loader(datamodule: pl.LightningDataModule, split: Split) -> DataLoader:
    """The data module's loader for ``split`` (``val`` is the evaluation split of the fit stage)."""
    datamodule.setup("test" if split == "test" else "fit")
    loaders = {
        "train": datamodule.train_dataloader,
        "val": datamodule.val_dataloader,
        "test": datamodule.test_dataloader,
    }
    return loaders[split]()


def ordered_loader(datamodule: pl.LightningDataModule, split: Split, seed: int) -> DataLoader | DeviceBatchLoader:
    """The data module's loader for ``split`` rebuilt to serve the split in its stored order, every sample once.

    Training loaders shuffle with a seed taken from the process's random state (``EpochShuffleSampler``), so
    the clouds, and the random draws made per batch, would come in another order in every fresh process. The
    rebuilt loader keeps the data set, batch size, workers and collate function (a device-resident loader its
    device), shuffles nothing, drops nothing and seeds its workers from ``seed``. Loaders of other kinds are
    returned as they are.
    """
    loader = split_loader(datamodule, split)
    if isinstance(loader, DeviceBatchLoader):
        return DeviceBatchLoader(loader.points, loader.labels, loader.device, loader.batch_size)
    if isinstance(loader, DataLoader) and loader.batch_size is not None:
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
            generator=torch.Generator().manual_seed(seed),
        )
    return loader

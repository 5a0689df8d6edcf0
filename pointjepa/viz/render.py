"""Figures out: an RGB array, an atomically written PNG, or an image in the run's loggers."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger

from pointjepa.utils.io import atomic_write


def figure_to_array(figure: Figure, dpi: int = 100) -> np.ndarray:
    """Render a figure -> RGB image (H, W, 3) uint8, the form image loggers take."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def save_png(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically -> the path."""
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=dpi))


def image_loggers(loggers: Sequence[Any]) -> list[Any]:
    """Those of ``loggers`` that take images: W&B's ``log_image`` or TensorBoard's ``add_image``."""
    return [lg for lg in loggers if hasattr(lg, "log_image") or isinstance(lg, TensorBoardLogger)]


def log_figure(loggers: Sequence[Any], key: str, figure: Figure, step: int) -> None:
    """Log ``figure`` as an image to loggers with W&B's ``log_image`` or TensorBoard's ``add_image``."""
    image = figure_to_array(figure)
    for logger in loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key, [image], step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            logger.experiment.add_image(key, image, step, dataformats="HWC")

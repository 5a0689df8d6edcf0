"""Figures shared by training-time logging and the evaluation commands: confusion matrix and t-SNE."""

from __future__ import annotations

import io
from typing import Any, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torchmetrics.utilities.plot import plot_confusion_matrix


def confusion_matrix_figure(confmat: torch.Tensor | np.ndarray, label_names: Sequence[str] | None = None) -> Figure:
    """Confusion matrix (K, K), rows = true class, columns = prediction -> figure.

    Cell counts are written in the cells up to 20 classes; the figure grows with K.
    """
    confmat = torch.as_tensor(confmat)
    num_classes = confmat.shape[0]
    if confmat.shape != (num_classes, num_classes):
        raise ValueError(f"confusion matrix: expected a square (K, K) matrix, got {tuple(confmat.shape)}")
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(f"label_names: expected {num_classes} names, got {len(label_names)}")
    size = max(4.0, 0.3 * num_classes)
    fig = Figure(figsize=(size, size))  # no pyplot: no global figure state, works headless
    ax = fig.subplots()
    plot_confusion_matrix(
        confmat.cpu(), ax=ax, add_text=num_classes <= 20, labels=list(label_names) if label_names else None
    )
    ax.set_title("confusion matrix")
    fig.tight_layout()
    return fig


def tsne_figure(
    features: np.ndarray, labels: np.ndarray, label_names: Sequence[str] | None = None, seed: int = 0
) -> Figure:
    """t-SNE of features (n, F) coloured by labels (n,) -> scatter plot figure."""
    features, labels = np.asarray(features), np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"t-SNE: expected features (n, F) and labels (n,), got {features.shape} and {labels.shape}")
    if len(features) < 3:
        raise ValueError(f"t-SNE: needs at least 3 samples, got {len(features)}")
    perplexity = min(30.0, (len(features) - 1) / 3)
    # One OpenMP thread: fast for a few thousand points, while OpenMP barriers stall t-SNE for a minute
    # when the cores are busy (training, loader workers, other jobs).
    with threadpool_limits(limits=1, user_api="openmp"):
        embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    classes = np.unique(labels)
    colours = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    for i, label in enumerate(classes):
        points = embedding[labels == label]
        name = label_names[label] if label_names is not None and label < len(label_names) else str(label)
        ax.scatter(points[:, 0], points[:, 1], s=6, color=colours(i % colours.N), label=name)
    if len(classes) <= 20:
        ax.legend(markerscale=2, fontsize="small", loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("t-SNE of the embeddings")
    fig.tight_layout()
    return fig


def figure_to_array(figure: Figure, dpi: int = 100) -> np.ndarray:
    """Render a figure -> RGB image (H, W, 3) uint8, the form image loggers take."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def log_figure(loggers: Sequence[Any], key: str, figure: Figure, step: int) -> None:
    """Log ``figure`` as an image to loggers with W&B's ``log_image`` or TensorBoard's ``add_image``."""
    image = figure_to_array(figure)
    for logger in loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key, [image], step=step)
        elif hasattr(getattr(logger, "experiment", None), "add_image"):
            logger.experiment.add_image(key, image, step, dataformats="HWC")

"""Confusion-matrix figures: plain counts or shares, titled with the overall accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.utilities.plot import plot_confusion_matrix

Normalize = Literal["none", "true", "pred", "all"]
#: The dimensions summed to normalise counts (K, K): per true class (row), per prediction (column), overall.
_SUM_DIMS: dict[str, int | tuple[int, int]] = {"true": 1, "pred": 0, "all": (0, 1)}


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


def confusion_figure(
    counts: torch.Tensor, names: Sequence[str] | None, title: str, normalize: Normalize = "none"
) -> Figure:
    """Confusion counts (K, K) -> figure titled with ``title`` and the overall accuracy; ``normalize``
    shows shares of each true class (rows), of each prediction (columns) or of all clouds."""
    accuracy = float(counts.diagonal().sum() / counts.sum().clamp_min(1))
    shown = counts
    if normalize != "none":
        shown = counts / counts.sum(dim=_SUM_DIMS[normalize], keepdim=True).clamp_min(1)
    figure = confusion_matrix_figure(shown, names)
    figure.axes[0].set_title(f"{title}: accuracy {100 * accuracy:.2f}% ({int(counts.sum())} clouds)")
    figure.tight_layout()
    return figure

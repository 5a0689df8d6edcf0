"""t-SNE scatter plot of embeddings coloured by class."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits


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

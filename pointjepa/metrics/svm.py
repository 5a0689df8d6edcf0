"""Features of a split's clouds and a linear SVM's accuracy on them (the SVM probe and SVM validation)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from sklearn.svm import SVC
from tqdm.auto import tqdm


@torch.no_grad()
def extract_features(
    embed: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable,
    device: torch.device | str,
    progress: bool = False,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``embed`` ((B, N, 3) points on ``device`` -> (B, F)) over ``(points, labels, ...)`` batches.

    Returns features (n, F) float32 and labels (n,) int64 as numpy arrays; the copies to the host
    happen once at the end.
    """
    features, labels = [], []
    for batch in tqdm(batches, desc=desc, disable=not progress, leave=False):
        points, label = batch[0], batch[1]
        features.append(embed(points.to(device, non_blocking=True)).float())
        labels.append(label.to(device, non_blocking=True))
    if not features:
        raise ValueError("no batches to extract features from (empty data set?)")
    return torch.cat(features).cpu().numpy(), torch.cat(labels).reshape(-1).cpu().numpy().astype(np.int64)


def linear_svm_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, C: float = 0.012
) -> tuple[float, float]:
    """Fit ``SVC(kernel="linear", C)`` on the train features; -> (train accuracy, test accuracy)."""
    if C <= 0:
        raise ValueError(f"svm C: expected a positive value, got {C}")
    if len(np.unique(y_train)) < 2:
        raise ValueError("SVM probe: the training features hold fewer than two classes")
    svm = SVC(C=C, kernel="linear")
    svm.fit(x_train, y_train)
    return float(svm.score(x_train, y_train)), float(svm.score(x_test, y_test))


def svm_probe(
    embed: Callable[[torch.Tensor], torch.Tensor], datamodule: Any, device: torch.device | str, C: float
) -> tuple[float, float]:
    """Linear SVM on ``embed`` features (points (B, N, 3) -> (B, F)) of a set-up data module's train split,
    scored on it and on its val split -> (train accuracy, val accuracy)."""
    x_train, y_train = extract_features(embed, datamodule.train_dataloader(), device)
    x_val, y_val = extract_features(embed, datamodule.val_dataloader(), device)
    return linear_svm_accuracy(x_train, y_train, x_val, y_val, C=C)

"""Classification accuracies logged by the classifier."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """``<prefix>acc`` (overall), ``<prefix>top_3_acc`` and ``<prefix>macc`` (mean of class accuracies)."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "top_3_acc": MulticlassAccuracy(num_classes, top_k=min(3, num_classes), average="micro"),
            "macc": MulticlassAccuracy(num_classes, average="macro"),
        },
        prefix=prefix,
    )

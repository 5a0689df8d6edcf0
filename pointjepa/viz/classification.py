"""A classifier's validation figures: the confusion matrix and a t-SNE of the embeddings, gathered over an epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics.aggregation import CatMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from pointjepa.viz.confusion import confusion_figure
from pointjepa.viz.labels import label_names
from pointjepa.viz.render import image_loggers, log_figure
from pointjepa.viz.tsne import tsne_figure


class ClassificationFigures(nn.Module):
    """Gathers a validation epoch's logits and embeddings (synchronised over processes; nothing is saved in
    checkpoints) and logs ``val_confusion_matrix`` and ``val_tsne`` images.

    Args:
        num_classes: number of classes K.
        confusion_matrix: gather the confusion matrix.
        tsne: gather the embeddings for a t-SNE.
    """

    def __init__(self, num_classes: int, confusion_matrix: bool, tsne: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.confusion = MulticlassConfusionMatrix(num_classes) if confusion_matrix else None
        self.embeddings = CatMetric() if tsne else None
        self.labels = CatMetric() if tsne else None

    def update(self, embedding: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """embedding (B, F), logits (B, K), labels (B,) of one validation batch."""
        if self.confusion is not None:
            self.confusion.update(logits, labels)
        if self.embeddings is not None and self.labels is not None:
            self.embeddings.update(embedding.float())
            self.labels.update(labels)

    def log(self, trainer: Any, epoch: int, step: int) -> None:
        """Log the epoch's figures to ``trainer``'s image loggers (W&B, TensorBoard) from the first process,
        except in the sanity check, and reset. Every process computes (the states are gathered) unless the
        figures go nowhere: the loggers are the same on every process."""
        loggers = image_loggers(trainer.loggers)
        if loggers and not trainer.sanity_checking:
            counts = self.confusion.compute().cpu() if self.confusion is not None else None
            features = self.embeddings.compute().cpu().numpy() if self.embeddings is not None else None
            labels = self.labels.compute().cpu().numpy().astype(np.int64) if self.labels is not None else None
            if trainer.is_global_zero:
                names = label_names(trainer.datamodule, self.num_classes)
                if counts is not None:
                    log_figure(loggers, "val_confusion_matrix", confusion_figure(counts, names, f"epoch {epoch}"), step)
                if features is not None and labels is not None:
                    log_figure(loggers, "val_tsne", tsne_figure(features, labels, names), step)
        for metric in (self.confusion, self.embeddings, self.labels):
            if metric is not None:
                metric.reset()

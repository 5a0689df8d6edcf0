"""Callbacks that log evaluation figures to the run's image-capable loggers (W&B, TensorBoard).

Add them to any task, e.g. in a config::

    trainer:
      callbacks:
        - class_path: pointjepa.callbacks.image_loggers.ConfusionMatrixImageLogger
          init_args: {every_n_epochs: 10}

Loggers without images (CSV) or no logger at all: the callbacks do nothing and cost nothing. They
work from tensors the validation step computes anyway (the head's input and output, caught by a
forward hook) and copy to the host once per logged epoch.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle
from torchmetrics.classification import MulticlassConfusionMatrix

from pointjepa.models.point_jepa import PointJepa
from pointjepa.viz import (
    choose_blocks,
    confusion_figure,
    image_loggers,
    label_names,
    log_figure,
    target_context_figure,
    tsne_figure,
)


class _EveryNEpochsImageLogger(pl.Callback):
    """Base: decides at validation start whether this epoch logs (every ``every_n_epochs`` epochs and the
    last one, never in the sanity check, only with an image logger)."""

    def __init__(self, every_n_epochs: int, key: str) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs: expected a positive integer, got {every_n_epochs}")
        self.every_n_epochs, self.key = every_n_epochs, key
        self.active = False

    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return (
            not trainer.sanity_checking
            and bool(image_loggers(trainer.loggers))
            and (epoch % self.every_n_epochs == 0 or last)
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.active = self._due(trainer)

    def _log(self, trainer: pl.Trainer, figure: Any) -> None:
        if trainer.is_global_zero:
            log_figure(image_loggers(trainer.loggers), self.key, figure, trainer.global_step)


class _HeadHookImageLogger(_EveryNEpochsImageLogger):
    """Base: keeps the input and output of the first call of submodule ``head`` in each validation batch
    (the plain evaluation pass; voting passes come later)."""

    def __init__(self, every_n_epochs: int, key: str, head: str) -> None:
        super().__init__(every_n_epochs, key)
        self.head = head
        self._handle: RemovableHandle | None = None
        self._caught: tuple[torch.Tensor, torch.Tensor] | None = None
        self._armed = False

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._armed:
            self._caught, self._armed = (inputs[0].detach(), output.detach()), False

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        module = getattr(pl_module, self.head, None)
        if self.active and isinstance(module, nn.Module):
            self._handle = module.register_forward_hook(self._hook)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._armed, self._caught = self._handle is not None, None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


class ConfusionMatrixImageLogger(_HeadHookImageLogger):
    """Logs the validation confusion matrix of a classifier (rows: true class) as image ``key``.

    Args:
        every_n_epochs: log on every n-th epoch (validation must run on it) and on the last one.
        head: the module's classification head, whose output are the logits (B, K).
        normalize: ``true`` (rows sum to 1), ``pred``, ``all`` or ``none`` (counts).
        key: image name in the logger.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        head: str = "cls_head",
        normalize: Literal["none", "true", "pred", "all"] = "none",
        key: str = "images/val_confusion_matrix",
    ) -> None:
        super().__init__(every_n_epochs, key, head)
        if normalize not in ("none", "true", "pred", "all"):
            raise ValueError(f"normalize: expected one of ['none', 'true', 'pred', 'all'], got {normalize!r}")
        self.normalize = normalize
        self._metric: MulticlassConfusionMatrix | None = None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._caught is None:
            return
        logits = self._caught[1]
        if self._metric is None or self._metric.num_classes != logits.shape[-1]:
            self._metric = MulticlassConfusionMatrix(logits.shape[-1])
        self._metric = self._metric.to(logits.device)
        self._metric.update(logits, batch[1].reshape(-1))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        if not self.active or self._metric is None:
            return
        counts = self._metric.compute()  # synchronised over processes
        self._metric.reset()
        if trainer.is_global_zero:
            # Lightning's data connector sets Trainer.datamodule, which the Trainer class does not declare.
            names = label_names(trainer.datamodule, counts.shape[0])  # type: ignore[attr-defined]
            self._log(trainer, confusion_figure(counts.cpu(), names, f"epoch {trainer.current_epoch}", self.normalize))


class EmbeddingTSNEImageLogger(_HeadHookImageLogger):
    """Logs a t-SNE of validation embeddings coloured by label as image ``key``.

    The embeddings are the input of submodule ``head`` (a classifier's pooled features); a module without
    it but with an ``embed(points)`` method (``PointJepa``: student max+mean features) is asked for them.
    Only the first process's samples are shown.

    Args:
        every_n_epochs: log on every n-th epoch (validation must run on it) and on the last one.
        max_samples: at most this many embeddings go into t-SNE.
        head: module whose input are the embeddings (B, F).
        key: image name in the logger.
    """

    def __init__(
        self, every_n_epochs: int = 10, max_samples: int = 1000, head: str = "cls_head", key: str = "images/val_tsne"
    ) -> None:
        super().__init__(every_n_epochs, key, head)
        if max_samples < 3:
            raise ValueError(f"max_samples: expected at least 3, got {max_samples}")
        self.max_samples = max_samples
        self._features: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.active or sum(len(f) for f in self._features) >= self.max_samples:
            return
        embed = getattr(pl_module, "embed", None)
        if self._caught is not None:
            features = self._caught[0]
        elif self._handle is None and callable(embed):
            features = embed(batch[0]).detach()
        else:
            return
        self._features.append(features.float())
        self._labels.append(batch[1].reshape(-1).detach())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        features, labels = self._features, self._labels
        self._features, self._labels = [], []
        if not self.active or not trainer.is_global_zero or sum(len(f) for f in features) < 3:
            return
        x = torch.cat(features)[: self.max_samples].cpu().numpy()
        y = torch.cat(labels)[: self.max_samples].cpu().numpy()
        num_classes = int(getattr(pl_module, "num_classes", 0) or y.max() + 1)
        names = label_names(trainer.datamodule, num_classes)  # type: ignore[attr-defined]  # as above
        self._log(trainer, tsne_figure(x, y, names))


class TargetContextImageLogger(_EveryNEpochsImageLogger):
    """Logs one validation cloud of a ``PointJepa`` run with the context, target blocks and rest that its
    sequencer and samplers choose (the first batch's cloud ``sample_index``, samplers seeded with ``seed``).

    Args:
        every_n_epochs: log on every n-th epoch (validation must run on it) and on the last one.
        sample_index: which cloud of the first validation batch.
        seed: seed of the target and context samplers (the same blocks every time for a fixed cloud).
        key: image name in the logger.
    """

    def __init__(
        self, every_n_epochs: int = 10, sample_index: int = 0, seed: int = 0, key: str = "images/target_context"
    ) -> None:
        super().__init__(every_n_epochs, key)
        if sample_index < 0:
            raise ValueError(f"sample_index: expected >= 0, got {sample_index}")
        self.sample_index, self.seed = sample_index, seed
        self._cloud: torch.Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not isinstance(pl_module, PointJepa):
            raise ValueError(
                f"TargetContextImageLogger needs a Point-JEPA pretraining model, not {type(pl_module).__name__}"
            )

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.active and batch_idx == 0 and dataloader_idx == 0 and self.sample_index < len(batch[0]):
            self._cloud = batch[0][self.sample_index].detach()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        cloud, self._cloud = self._cloud, None
        if not self.active or cloud is None or not trainer.is_global_zero or not isinstance(pl_module, PointJepa):
            return
        blocks = choose_blocks(pl_module, cloud, torch.Generator().manual_seed(self.seed))
        self._log(trainer, target_context_figure(blocks, f"epoch {trainer.current_epoch}: context and target blocks"))

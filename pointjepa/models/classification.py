"""Fine-tuning a pretrained backbone for shape classification (ModelNet40, ScanObjectNN, few-shot)."""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from pointjepa.metrics.accuracy import classification_metrics
from pointjepa.models.base import BackboneModule
from pointjepa.modules.backbone import backbone_from_hparams
from pointjepa.modules.cls_head import HeadKind, Pooling, build_cls_head, pool_tokens, pooled_dim, uses_cls_token
from pointjepa.modules.freezing import UnfreezeSchedule
from pointjepa.modules.transforms import build_task_transforms, build_transforms, fps_subsample, transform_kwargs
from pointjepa.utils.options import check_choice
from pointjepa.utils.pretrained import load_backbone
from pointjepa.viz import ClassificationFigures, image_loggers

Stage = Literal["val", "test"]
VoteMethod = Literal["random_start", "augmented"]
VOTE_METHODS: tuple[str, ...] = get_args(VoteMethod)


class PointJepaClassification(BackboneModule):
    """Classification fine-tuning; the constructor arguments are the original config keys.

    Points (B, N, 3) are subsampled to ``num_points`` (FPS, random start when training, first point in eval),
    transformed, tokenized and encoded; the pooled tokens go through the head to logits (B, K).

    Args:
        num_classes: number of classes (the CLI links it from the data module).
        num_points: points per cloud after subsampling.
        tokenizer_embedding_dim: mini-PointNet width when it differs from encoder_dim, then projected to
            encoder_dim (256 for Point-BERT weights, whose ``reduce_dim`` loads into the projection);
            null: the mini-PointNet makes encoder_dim tokens.
        tokenizer_unfreeze_epoch: first epoch at which the tokenizer trains.
        positional_encoding_unfreeze_epoch: first epoch at which the positional encoding trains.
        encoder_qkv_bias: bias on the qkv projection (false for Point-MAE / Point-BERT weights).
        encoder_freeze_layers: freeze only these blocks (null: the whole encoder) until unfrozen.
        encoder_unfreeze_epoch: first epoch at which the encoder trains.
        encoder_unfreeze_layers: unfreeze only these blocks (null: the whole encoder).
        encoder_unfreeze_stepwise: unfreeze a few blocks at a time, last block first, until max_epochs.
        encoder_unfreeze_stepwise_num_layers: blocks per stepwise step.
        encoder_learning_rate: learning rate of the encoder (null: learning_rate).
        cls_head: ``mlp`` (two Linear-BN-ReLU-Dropout layers, then Linear) or ``linear``.
        cls_head_dim: MLP head width.
        cls_head_dropout: MLP head dropout.
        cls_head_pooling: how tokens become one embedding; ``cls_token`` kinds add a learned class token.
        loss_label_smoothing: label smoothing of the cross-entropy.
        pretrained_ckpt_ignore_encoder_layers: encoder blocks not to load from ``pretrained_ckpt_path``.
        log_tsne: log a t-SNE image of the validation embeddings (``val_tsne``) each validation epoch.
        log_confusion_matrix: log a confusion matrix image (``val_confusion_matrix``) each validation epoch.
        vote: also log ``val_vote_acc``, the accuracy of the softmax averaged over ``vote_num`` passes.
        vote_num: passes per vote.
        vote_method: ``random_start`` (the original's): the evaluation input passed ``vote_num`` times, each
            tokenized from random FPS start points; ``augmented``: the plain pass and ``vote_num - 1`` passes
            subsampled from a random start, scaled and translated.
    """

    summary_metrics = ("val_acc", "val_top_3_acc", "val_macc", "val_vote_acc")

    def __init__(
        self,
        num_classes: int = 40,
        num_points: int = 1024,
        tokenizer_embedding_dim: int | None = None,
        tokenizer_unfreeze_epoch: int = 0,
        positional_encoding_unfreeze_epoch: int = 0,
        encoder_qkv_bias: bool = True,
        encoder_freeze_layers: list[int] | None = None,
        encoder_unfreeze_epoch: int = 0,
        encoder_unfreeze_layers: list[int] | None = None,
        encoder_unfreeze_stepwise: bool = False,
        encoder_unfreeze_stepwise_num_layers: int = 2,
        encoder_learning_rate: float | None = None,
        cls_head: HeadKind = "mlp",
        cls_head_dim: int = 256,
        cls_head_dropout: float = 0.5,
        cls_head_pooling: Pooling = "mean+max",
        loss_label_smoothing: float = 0.2,
        pretrained_ckpt_ignore_encoder_layers: list[int] = [],
        log_tsne: bool = False,
        log_confusion_matrix: bool = False,
        vote: bool = False,
        vote_num: int = 10,
        vote_method: VoteMethod = "random_start",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_points < 1 or vote_num < 1:
            raise ValueError(f"num_points and vote_num: expected positive integers, got {num_points} and {vote_num}")
        check_choice("vote_method", vote_method, VOTE_METHODS)
        if not 0.0 <= loss_label_smoothing < 1.0:
            raise ValueError(f"loss_label_smoothing: expected a value in [0, 1), got {loss_label_smoothing}")
        self.num_classes, self.num_points, self.pooling = num_classes, num_points, cls_head_pooling
        self.vote, self.vote_num, self.vote_method = vote, vote_num, vote_method
        self.encoder_learning_rate = encoder_learning_rate
        self.ignore_encoder_layers = pretrained_ckpt_ignore_encoder_layers

        self.train_transformations, self.val_transformations = build_task_transforms(self.hparams, num_points)
        self.vote_augmentation = build_transforms(["scale", "translate"], **transform_kwargs(self.hparams, num_points))
        backbone = backbone_from_hparams(self.hparams)
        self.tokenizer = backbone.tokenizer
        self.positional_encoding = backbone.positional_encoding
        self.encoder = backbone.encoder
        dim = self.encoder_dim
        if uses_cls_token(cls_head_pooling):
            self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(dim), std=0.02, a=-0.02, b=0.02))
            self.cls_pos = nn.Parameter(nn.init.trunc_normal_(torch.zeros(dim), std=0.02, a=-0.02, b=0.02))
        head_in = pooled_dim(cls_head_pooling, dim)
        self.cls_head = build_cls_head(cls_head, head_in, num_classes, cls_head_dim, cls_head_dropout)
        self.loss_func = nn.CrossEntropyLoss(label_smoothing=loss_label_smoothing)
        self.unfreeze_schedule = UnfreezeSchedule(
            depth=self.encoder_depth,
            encoder_unfreeze_epoch=encoder_unfreeze_epoch,
            encoder_freeze_layers=None if encoder_freeze_layers is None else tuple(encoder_freeze_layers),
            encoder_unfreeze_layers=None if encoder_unfreeze_layers is None else tuple(encoder_unfreeze_layers),
            encoder_unfreeze_stepwise=encoder_unfreeze_stepwise,
            encoder_unfreeze_stepwise_num_layers=encoder_unfreeze_stepwise_num_layers,
            tokenizer_unfreeze_epoch=tokenizer_unfreeze_epoch,
            positional_encoding_unfreeze_epoch=positional_encoding_unfreeze_epoch,
        )

        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = classification_metrics(num_classes, "val_")
        self.test_metrics = classification_metrics(num_classes, "test_")
        votes = {stage: MulticlassAccuracy(num_classes, average="micro") for stage in ("val", "test")}
        self.vote_acc = nn.ModuleDict(votes) if vote else None
        wants_figures = log_tsne or log_confusion_matrix
        self.val_figures = ClassificationFigures(num_classes, log_confusion_matrix, log_tsne) if wants_figures else None

    def embed(self, points: torch.Tensor) -> torch.Tensor:
        """Transformed points (B, N, 3) -> pooled embedding (B, pooled_dim)."""
        tokens, centers = self.tokenizer(points)
        pos = self.positional_encoding(centers)
        if uses_cls_token(self.pooling):
            B, _, C = tokens.shape
            tokens = torch.cat([self.cls_token.reshape(1, 1, C).expand(B, -1, -1), tokens], dim=1)
            pos = torch.cat([self.cls_pos.reshape(1, 1, C).expand(B, -1, -1), pos], dim=1)
        return pool_tokens(self.encoder(tokens, pos).last_hidden_state, self.pooling)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Transformed points (B, N, 3) -> logits (B, num_classes)."""
        return self.cls_head(self.embed(points))

    def prepare(self, points: torch.Tensor, train: bool) -> torch.Tensor:
        """Raw batch points (B, N, 3) -> subsampled and transformed model input (B, num_points, 3)."""
        transforms = self.train_transformations if train else self.val_transformations
        return transforms(fps_subsample(points, self.num_points, train or self.fps_random_start_in_eval))

    def vote_probabilities(self, points: torch.Tensor, prepared: torch.Tensor | None = None) -> torch.Tensor:
        """Raw points (B, N, 3) -> class probabilities (B, K): the softmax averaged over ``vote_num`` passes
        (see ``vote_method``), run as one batch. ``prepared`` (B, num_points, 3): the evaluation input the
        passes start from (default ``prepare(points, train=False)``)."""
        if prepared is None:
            prepared = self.prepare(points, train=False)
        passes = [prepared]
        for _ in range(self.vote_num - 1):
            if self.vote_method == "random_start":
                passes.append(prepared)
            else:
                augmented = self.vote_augmentation(fps_subsample(points, self.num_points, random_start=True))
                passes.append(self.val_transformations(augmented))
        with self.tokenizer.random_start(self.vote_method == "random_start"):
            logits = self(torch.cat(passes))
        return F.softmax(logits.float(), dim=-1).reshape(self.vote_num, len(points), -1).mean(0)

    def load_pretrained(self, path: str) -> None:
        """Backbone (and class token) weights from any supported checkpoint layout; the head stays new."""
        load_backbone(self, path, ignore_encoder_layers=self.ignore_encoder_layers)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        points, labels = batch[0], batch[1]
        logits = self(self.prepare(points, train=True))
        loss = self.loss_func(logits, labels)
        self.log("train_loss", loss, on_epoch=True, prog_bar=True)
        self.train_acc(logits, labels)
        self.log("train_acc", self.train_acc, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, ...], stage: Stage) -> None:
        points, labels = batch[0], batch[1]
        prepared = self.prepare(points, train=False)
        embedding = self.embed(prepared)
        logits = self.cls_head(embedding)
        self.log(f"{stage}_loss", self.loss_func(logits, labels), sync_dist=True)
        if stage == "val" and self.val_figures is not None:
            self.val_figures.update(embedding, logits, labels)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics(logits, labels)
        self.log_dict(metrics)
        vote_acc = None if self.vote_acc is None else self.vote_acc[stage]
        if isinstance(vote_acc, MulticlassAccuracy):
            vote_acc(self.vote_probabilities(points, prepared), labels)
            self.log(f"{stage}_vote_acc", vote_acc)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """-> class probabilities (B, K) (voted when ``vote``)."""
        points = batch[0]
        if self.vote:
            return self.vote_probabilities(points)
        return F.softmax(self(self.prepare(points, train=False)).float(), dim=-1)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.val_figures is not None and not image_loggers(self.loggers):
            rank_zero_warn(
                "log_tsne / log_confusion_matrix need an image logger (W&B, TensorBoard); no images will be logged"
            )

    def on_validation_epoch_end(self) -> None:
        if self.val_figures is not None:
            self.val_figures.log(self.trainer, self.current_epoch, self.global_step)

    def optimizer_parameters(self) -> list[dict[str, Any]]:
        """Two groups: the encoder's parameters (at ``encoder_learning_rate``) and the others."""
        encoder = [p for name, p in self.named_parameters() if name.startswith("encoder.")]
        others = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        encoder_lr = self.learning_rate if self.encoder_learning_rate is None else self.encoder_learning_rate
        return [{"params": encoder, "lr": encoder_lr}, {"params": others}]

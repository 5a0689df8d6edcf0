"""Fine-tuning a pretrained backbone for shape classification (ModelNet40, ScanObjectNN, few-shot)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Literal, get_args

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from pointjepa.modules.backbone import backbone_from_hparams
from pointjepa.modules.cls_head import HeadKind, Pooling, build_cls_head, pool_tokens, pooled_dim, uses_cls_token
from pointjepa.modules.freezing import Trainable, UnfreezeSchedule, apply_trainable
from pointjepa.modules.tokenizer import PointcloudTokenizer
from pointjepa.modules.transforms import build_task_transforms, build_transforms, transform_kwargs
from pointjepa.ops import farthest_point_sample
from pointjepa.utils.optim import warmup_cosine_schedule
from pointjepa.utils.pretrained import load_backbone

Stage = Literal["val", "test"]
VoteMethod = Literal["random_start", "augmented"]
VOTE_METHODS: tuple[str, ...] = get_args(VoteMethod)


def subsample(points: torch.Tensor, num_points: int, random: bool) -> torch.Tensor:
    """points (B, N, 3) -> (B, num_points, 3) by farthest point sampling from a random start point
    (training, voting) or from the first point (evaluation), as in pretraining."""
    if points.shape[1] < num_points:
        raise ValueError(f"num_points={num_points}, but the point clouds have only {points.shape[1]} points")
    if points.shape[1] == num_points:
        return points
    return farthest_point_sample(points, num_points, random_start=random)[0]


@contextmanager
def random_fps_start(tokenizer: PointcloudTokenizer, enabled: bool = True) -> Iterator[None]:
    """Within the block, the tokenizer's FPS starts at a random point in eval mode too (when ``enabled``)."""
    previous = tokenizer.random_start_in_eval
    tokenizer.random_start_in_eval = previous or enabled
    try:
        yield
    finally:
        tokenizer.random_start_in_eval = previous


def _eval_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """``<prefix>acc`` (overall), ``<prefix>top_3_acc`` and ``<prefix>macc`` (mean of class accuracies)."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "top_3_acc": MulticlassAccuracy(num_classes, top_k=min(3, num_classes), average="micro"),
            "macc": MulticlassAccuracy(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class PointJepaClassification(pl.LightningModule):
    """Classification fine-tuning; the constructor arguments are the original config keys (SPEC §8).

    Points (B, N, 3) are subsampled to ``num_points`` (FPS, random start when training, first point in eval),
    transformed, tokenized and encoded; the pooled tokens go through the head to logits (B, K).

    Args:
        num_classes: number of classes (the CLI links it from the data module).
        num_points: points per cloud after subsampling.
        tokenizer_num_groups: tokens per cloud.
        tokenizer_group_size: points per token group.
        tokenizer_group_radius: ball-query radius (null: kNN groups).
        tokenizer_embedding_dim: mini-PointNet width when it differs from encoder_dim, then projected to
            encoder_dim (256 for Point-BERT weights, whose ``reduce_dim`` loads into the projection);
            null: the mini-PointNet makes encoder_dim tokens.
        tokenizer_unfreeze_epoch: first epoch at which the tokenizer trains.
        positional_encoding_unfreeze_epoch: first epoch at which the positional encoding trains.
        encoder_dim: token width C.
        encoder_depth: transformer blocks.
        encoder_heads: attention heads.
        encoder_dropout: dropout in the blocks.
        encoder_attention_dropout: dropout on attention weights.
        encoder_drop_path_rate: stochastic depth of the last block (rising linearly from 0).
        encoder_add_pos_at_every_layer: add the positional encoding before every block.
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
        learning_rate: AdamW learning rate.
        optimizer_adamw_weight_decay: AdamW weight decay.
        lr_scheduler_linear_warmup_epochs: linear warm-up epochs before the cosine decay.
        lr_scheduler_linear_warmup_start_lr: learning rate at the first warm-up epoch.
        lr_scheduler_cosine_eta_min: learning rate reached at max_epochs.
        pretrained_ckpt_path: backbone weights loaded when fitting starts (any supported checkpoint layout).
        pretrained_ckpt_ignore_encoder_layers: encoder blocks not to load from it.
        train_transformations: transforms of training clouds (scale, center, unit_sphere, rotate, ...).
        val_transformations: transforms of evaluation clouds.
        transformation_scale_min: smallest scale factor.
        transformation_scale_max: largest scale factor.
        transformation_scale_symmetries: per axis, 1 to also mirror it at random.
        transformation_rotate_dims: rotation axes.
        transformation_rotate_degs: rotation step in degrees (null: any angle).
        transformation_translate: largest shift per axis.
        transformation_height_normalize_dim: the height axis of height_norm.
        transformation_scale_mirror: let ``scale`` also mirror the axes whose symmetry is 1.
        transformation_per_sample: draw scale, rotation and shift per cloud instead of per batch.
        fps_random_start_in_eval: FPS (``num_points`` subsampling and tokenizer) starts at a random point in
            eval mode too, as in the original.
        log_tsne: log a t-SNE image of the validation embeddings each validation epoch.
        log_confusion_matrix: log a confusion matrix image each validation epoch.
        vote: also log ``val_vote_acc``, the accuracy of the softmax averaged over ``vote_num`` passes.
        vote_num: passes per vote.
        vote_method: ``random_start`` (the original's): the evaluation input passed ``vote_num`` times, each
            tokenized from random FPS start points; ``augmented``: the plain pass and ``vote_num - 1`` passes
            subsampled from a random start, scaled and translated.
    """

    def __init__(
        self,
        num_classes: int = 40,
        num_points: int = 1024,
        tokenizer_num_groups: int = 64,
        tokenizer_group_size: int = 32,
        tokenizer_group_radius: float | None = None,
        tokenizer_embedding_dim: int | None = None,
        tokenizer_unfreeze_epoch: int = 0,
        positional_encoding_unfreeze_epoch: int = 0,
        encoder_dim: int = 384,
        encoder_depth: int = 12,
        encoder_heads: int = 6,
        encoder_dropout: float = 0.0,
        encoder_attention_dropout: float = 0.0,
        encoder_drop_path_rate: float = 0.2,
        encoder_add_pos_at_every_layer: bool = True,
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
        learning_rate: float = 1e-3,
        optimizer_adamw_weight_decay: float = 0.05,
        lr_scheduler_linear_warmup_epochs: int = 10,
        lr_scheduler_linear_warmup_start_lr: float = 1e-6,
        lr_scheduler_cosine_eta_min: float = 1e-6,
        pretrained_ckpt_path: str | None = None,
        pretrained_ckpt_ignore_encoder_layers: list[int] = [],
        train_transformations: list[str] = ["center", "unit_sphere"],
        val_transformations: list[str] = ["center", "unit_sphere"],
        transformation_scale_min: float = 0.8,
        transformation_scale_max: float = 1.2,
        transformation_scale_symmetries: tuple[int, int, int] = (1, 0, 1),
        transformation_rotate_dims: list[int] = [1],
        transformation_rotate_degs: float | None = None,
        transformation_translate: float = 0.2,
        transformation_height_normalize_dim: int = 1,
        transformation_scale_mirror: bool = False,
        transformation_per_sample: bool = False,
        fps_random_start_in_eval: bool = False,
        log_tsne: bool = False,
        log_confusion_matrix: bool = False,
        vote: bool = False,
        vote_num: int = 10,
        vote_method: VoteMethod = "random_start",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if num_points < 1 or vote_num < 1:
            raise ValueError(f"num_points and vote_num: expected positive integers, got {num_points} and {vote_num}")
        if vote_method not in VOTE_METHODS:
            raise ValueError(f"vote_method: expected one of {list(VOTE_METHODS)}, got {vote_method!r}")
        if not 0.0 <= loss_label_smoothing < 1.0:
            raise ValueError(f"loss_label_smoothing: expected a value in [0, 1), got {loss_label_smoothing}")

        self.train_transformations, self.val_transformations = build_task_transforms(self.hparams, num_points)
        self.vote_augmentation = build_transforms(["scale", "translate"], **transform_kwargs(self.hparams, num_points))
        backbone = backbone_from_hparams(self.hparams)
        self.tokenizer = backbone.tokenizer
        self.positional_encoding = backbone.positional_encoding
        self.encoder = backbone.encoder
        self.num_classes, self.num_points, self.pooling = num_classes, num_points, cls_head_pooling
        self.fps_random_start_in_eval = fps_random_start_in_eval
        self.vote, self.vote_num, self.vote_method, self.log_tsne = vote, vote_num, vote_method, log_tsne
        head_in = pooled_dim(cls_head_pooling, encoder_dim)
        if uses_cls_token(cls_head_pooling):
            self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.zeros(encoder_dim), std=0.02, a=-0.02, b=0.02))
            self.cls_pos = nn.Parameter(nn.init.trunc_normal_(torch.zeros(encoder_dim), std=0.02, a=-0.02, b=0.02))
        self.cls_head = build_cls_head(cls_head, head_in, num_classes, cls_head_dim, cls_head_dropout)
        self.loss_func = nn.CrossEntropyLoss(label_smoothing=loss_label_smoothing)

        self.schedule = UnfreezeSchedule(
            depth=encoder_depth,
            encoder_unfreeze_epoch=encoder_unfreeze_epoch,
            encoder_freeze_layers=None if encoder_freeze_layers is None else tuple(encoder_freeze_layers),
            encoder_unfreeze_layers=None if encoder_unfreeze_layers is None else tuple(encoder_unfreeze_layers),
            encoder_unfreeze_stepwise=encoder_unfreeze_stepwise,
            encoder_unfreeze_stepwise_num_layers=encoder_unfreeze_stepwise_num_layers,
            tokenizer_unfreeze_epoch=tokenizer_unfreeze_epoch,
            positional_encoding_unfreeze_epoch=positional_encoding_unfreeze_epoch,
        )
        self._trainable: Trainable | None = None
        self._pretrained_loaded = False
        self.pretrained_ckpt_path, self.ignore_encoder_layers = (
            pretrained_ckpt_path,
            pretrained_ckpt_ignore_encoder_layers,
        )

        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics = _eval_metrics(num_classes, "val_")
        self.test_metrics = _eval_metrics(num_classes, "test_")
        self.vote_acc = (
            nn.ModuleDict({s: MulticlassAccuracy(num_classes, average="micro") for s in ("val", "test")})
            if vote
            else None
        )
        self.val_confusion = MulticlassConfusionMatrix(num_classes) if log_confusion_matrix else None
        self._val_embeddings: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    # ---- model -----------------------------------------------------------------------------------------
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
        return transforms(subsample(points, self.num_points, random=train or self.fps_random_start_in_eval))

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
                augmented = self.vote_augmentation(subsample(points, self.num_points, random=True))
                passes.append(self.val_transformations(augmented))
        with random_fps_start(self.tokenizer, self.vote_method == "random_start"):
            logits = self(torch.cat(passes))
        return F.softmax(logits.float(), dim=-1).reshape(self.vote_num, len(points), -1).mean(0)

    # ---- weights and freezing --------------------------------------------------------------------------
    def load_pretrained(self, path: str) -> None:
        """Backbone (and class token) weights from any supported checkpoint layout; the head stays new."""
        load_backbone(self, path, ignore_encoder_layers=self.ignore_encoder_layers)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.pretrained_ckpt_path is not None and not self._pretrained_loaded:
            self.load_pretrained(self.pretrained_ckpt_path)
            self._pretrained_loaded = True
        wants_images = self.log_tsne or self.val_confusion is not None
        if stage == "fit" and wants_images and not self._image_loggers():
            rank_zero_warn(
                "log_tsne / log_confusion_matrix need an image logger (W&B, TensorBoard); no images will be logged"
            )

    def on_fit_start(self) -> None:
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                for name in ("val_acc", "val_top_3_acc", "val_macc", "val_vote_acc"):
                    logger.experiment.define_metric(name, summary="last,max")

    def on_train_epoch_start(self) -> None:
        trainable = self.schedule.trainable(self.current_epoch, self.trainer.max_epochs or 1)
        if trainable != self._trainable:
            apply_trainable(trainable, self.tokenizer, self.positional_encoding, self.encoder.blocks, self.encoder.norm)
            rank_zero_info(
                f"epoch {self.current_epoch}: training tokenizer={trainable.tokenizer}, "
                f"positional_encoding={trainable.positional_encoding}, encoder blocks "
                f"{sorted(trainable.encoder_blocks) or 'none'}, encoder norm={trainable.encoder_norm}"
            )
            self._trainable = trainable

    # ---- steps -----------------------------------------------------------------------------------------
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
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics(logits, labels)
        self.log_dict(metrics)
        if self.vote_acc is not None:
            self.vote_acc[stage](self.vote_probabilities(points, prepared), labels)
            self.log(f"{stage}_vote_acc", self.vote_acc[stage])
        if stage == "val" and self.val_confusion is not None:
            self.val_confusion.update(logits, labels)
        if stage == "val" and self.log_tsne:
            self._val_embeddings.append(embedding.detach().float())
            self._val_labels.append(labels.detach())

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

    # ---- images ----------------------------------------------------------------------------------------
    def _image_loggers(self) -> list[pl.loggers.Logger]:
        """Loggers that take images: W&B (and any with W&B's ``log_image``) and TensorBoard."""
        return [lg for lg in self.loggers if hasattr(lg, "log_image") or isinstance(lg, TensorBoardLogger)]

    def on_validation_epoch_end(self) -> None:
        confusion = None
        if self.val_confusion is not None:
            confusion = self.val_confusion.compute()
            self.val_confusion.reset()
        embeddings, labels = self._val_embeddings, self._val_labels
        self._val_embeddings, self._val_labels = [], []
        loggers = self._image_loggers()
        if self.trainer.sanity_checking or not loggers:
            return
        if embeddings:  # every rank takes part in the gather
            features = self.all_gather(torch.cat(embeddings)).reshape(-1, embeddings[0].shape[-1])
            targets = self.all_gather(torch.cat(labels)).reshape(-1)
        if not self.trainer.is_global_zero:
            return
        from pointjepa.viz import confusion_matrix_figure, log_figure, tsne_figure

        datamodule = getattr(self.trainer, "datamodule", None)
        names = getattr(datamodule, "label_names", None)
        names = list(names) if names is not None and len(names) == self.num_classes else None
        if confusion is not None:
            log_figure(loggers, "val_confusion_matrix", confusion_matrix_figure(confusion, names), self.global_step)
        if embeddings:
            figure = tsne_figure(features.cpu().numpy(), targets.cpu().numpy(), names)
            log_figure(loggers, "val_tsne", figure, self.global_step)

    # ---- optimization ----------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        encoder = [p for name, p in self.named_parameters() if name.startswith("encoder.")]
        others = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        encoder_lr = hp.learning_rate if hp.encoder_learning_rate is None else hp.encoder_learning_rate
        optimizer = torch.optim.AdamW(
            [{"params": encoder, "lr": encoder_lr}, {"params": others}],
            lr=hp.learning_rate,
            weight_decay=hp.optimizer_adamw_weight_decay,
        )
        scheduler = warmup_cosine_schedule(
            optimizer,
            warmup_epochs=hp.lr_scheduler_linear_warmup_epochs,
            max_epochs=self.trainer.max_epochs,
            warmup_start_lr=hp.lr_scheduler_linear_warmup_start_lr,
            eta_min=hp.lr_scheduler_cosine_eta_min,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

"""Part segmentation fine-tuning (ShapeNetPart protocol) of a Point-JEPA backbone."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from pointjepa.datasets.synsets import SHAPENETPART_NUM_PARTS, SHAPENETPART_PARTS
from pointjepa.metrics.miou import PartSegmentationIoU, part_mask, restricted_argmax
from pointjepa.models.base import BackboneModule
from pointjepa.modules.backbone import backbone_from_hparams, pooled_features
from pointjepa.modules.feature_propagation import FeaturePropagation
from pointjepa.modules.freezing import UnfreezeSchedule, block_indices
from pointjepa.modules.seg_head import category_embedding, segmentation_head
from pointjepa.modules.transforms import build_task_transforms

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # points (B, N, 3), category (B,), seg (B, N)


class PointJepaPartSegmentation(BackboneModule):
    """Per-point part labels from a Point-JEPA encoder; the constructor arguments are the config keys.

    The hidden states of ``seg_head_fetch_layers`` are layer-normed and averaged per token; their max
    and mean over tokens plus a category embedding form the global feature; token features are
    propagated to every point (3 nearest centers) and a per-point head predicts log-probabilities.
    ``*_acc`` (over points) and ``*_macc`` (mean over parts of the per-part accuracy) score the argmax over
    all parts; the mIoUs restrict each shape's prediction to its category's parts. Whenever ``val_ins_miou``
    reaches a new maximum, that epoch's ``val_cat_miou`` is also logged as ``val_cat_miou_at_max_ins_miou``.

    Args:
        tokenizer_num_groups: tokens per cloud.
        tokenizer_embedding_dim: mini-PointNet width when it differs from encoder_dim, then projected
            to encoder_dim (256 for Point-BERT weights); null: encoder_dim tokens.
        encoder_qkv_bias: bias on the qkv projection (false for Point-MAE / Point-BERT weights).
        encoder_unfreeze_epoch: the encoder blocks get no gradient before this epoch (with DDP and a
            value > 0, use a strategy with ``find_unused_parameters=True``).
        seg_head_fetch_layers: encoder blocks whose outputs feed the head.
        seg_head_dim: width of the head's first layer (the second is half of it).
        seg_head_dropout: dropout after the head's first layer.
        num_classes: number of shape categories K (linked from the data module by the CLI).
        num_seg_classes: number of parts P (linked from the data module).
        category_to_parts: category name -> its part ids, categories in label order (linked from the
            data module); default the ShapeNetPart table.
    """

    LABEL_EMBEDDING_DIM = 64
    UPSAMPLING_DIM = 384

    summary_metrics = ("val_acc", "val_macc", "val_ins_miou", "val_cat_miou")
    part_mask: torch.Tensor  # (K, P) buffer: which parts each category has

    def __init__(
        self,
        tokenizer_num_groups: int = 128,
        tokenizer_embedding_dim: int | None = None,
        encoder_qkv_bias: bool = True,
        encoder_unfreeze_epoch: int = 0,
        seg_head_fetch_layers: list[int] = [3, 7, 11],
        seg_head_dim: int = 512,
        seg_head_dropout: float = 0.5,
        num_classes: int = 16,
        num_seg_classes: int = SHAPENETPART_NUM_PARTS,
        category_to_parts: dict[str, list[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tokenizer_num_groups=tokenizer_num_groups, **kwargs)
        parts_table = dict(SHAPENETPART_PARTS if category_to_parts is None else category_to_parts)
        if len(parts_table) != num_classes:
            raise ValueError(
                f"category_to_parts: expected one entry per category (num_classes={num_classes}), "
                f"got {len(parts_table)}: {list(parts_table)}"
            )
        depth = self.encoder_depth
        self.fetch_layers = block_indices(seg_head_fetch_layers, depth, "seg_head_fetch_layers", allow_empty=False)
        self.num_classes, self.num_seg_classes = num_classes, num_seg_classes
        self.unfreeze_schedule = UnfreezeSchedule(depth, encoder_unfreeze_epoch=encoder_unfreeze_epoch)
        self.max_val_ins_miou = 0.0

        self.train_transformations, self.val_transformations = build_task_transforms(self.hparams)
        backbone = backbone_from_hparams(self.hparams)
        self.tokenizer = backbone.tokenizer
        self.positional_encoding = backbone.positional_encoding
        self.encoder = backbone.encoder
        self.label_embedding = category_embedding(num_classes, self.LABEL_EMBEDDING_DIM)
        self.upsampling = FeaturePropagation(self.encoder_dim + 3, [self.UPSAMPLING_DIM, self.UPSAMPLING_DIM])
        head_in = 2 * self.encoder_dim + self.LABEL_EMBEDDING_DIM + self.UPSAMPLING_DIM
        self.seg_head = segmentation_head(head_in, seg_head_dim, seg_head_dropout, num_seg_classes)
        self.register_buffer("part_mask", part_mask(parts_table, num_seg_classes), persistent=False)

        self.train_acc = MulticlassAccuracy(num_seg_classes, average="micro", validate_args=False)
        self.eval_acc = MulticlassAccuracy(num_seg_classes, average="micro", validate_args=False)
        self.eval_macc = MulticlassAccuracy(num_seg_classes, average="macro", validate_args=False)
        self.eval_miou = PartSegmentationIoU(parts_table, num_seg_classes)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3), category (B,) int64 -> per-point part log-probabilities (B, N, P)."""
        tokens, centers = self.tokenizer(points)  # (B, T, C), (B, T, 3)
        output = self.encoder(tokens, self.positional_encoding(centers), return_hidden_states=True)
        fetched = [output.hidden_states[i] for i in self.fetch_layers]
        token_features = torch.stack([F.layer_norm(h, h.shape[-1:]) for h in fetched]).mean(0)  # (B, T, C)
        one_hot = F.one_hot(category, self.num_classes).to(token_features.dtype)
        global_feature = torch.cat([pooled_features(token_features), self.label_embedding(one_hot)], dim=-1)  # 2C + L
        x = self.upsampling(points, centers, points, token_features)  # (B, N, U)
        x = torch.cat([x, global_feature.unsqueeze(1).expand(-1, points.shape[1], -1).to(x.dtype)], dim=-1)
        logits = self.seg_head(x.transpose(1, 2)).transpose(1, 2)  # (B, N, P)
        return F.log_softmax(logits.float(), dim=-1)

    def predict_parts(self, log_probs: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """(B, N, P) log-probabilities, (B,) categories -> (B, N) part ids among the category's parts."""
        return restricted_argmax(log_probs, category, self.part_mask)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        points, category, seg = batch
        log_probs = self(self.train_transformations(points), category)
        loss = F.nll_loss(log_probs.flatten(0, 1), seg.flatten())
        self.train_acc(log_probs.argmax(-1), seg)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: Batch, prefix: str) -> None:
        points, category, seg = batch
        log_probs = self(self.val_transformations(points), category)
        self.log(f"{prefix}_loss", F.nll_loss(log_probs.flatten(0, 1), seg.flatten()), sync_dist=True)
        unrestricted = log_probs.argmax(-1)
        self.eval_acc.update(unrestricted, seg)
        self.eval_macc.update(unrestricted, seg)
        self.eval_miou.update(self.predict_parts(log_probs, category), seg, category)

    def _log_epoch(self, prefix: str) -> dict[str, torch.Tensor]:
        """Log the epoch's accuracies and mIoUs as ``<prefix>_*``, reset the metrics; -> the mIoUs."""
        mious = self.eval_miou.compute()
        self.log(f"{prefix}_acc", self.eval_acc.compute())
        self.log(f"{prefix}_macc", self.eval_macc.compute())
        self.log(f"{prefix}_ins_miou", mious["ins_miou"], prog_bar=True)
        self.log(f"{prefix}_cat_miou", mious["cat_miou"], prog_bar=True)
        for name, value, count in zip(self.eval_miou.category_names, mious["per_category"], mious["count"].tolist()):
            if count > 0:
                self.log(f"{prefix}_cat_miou_{name}", value)
        for metric in (self.eval_acc, self.eval_macc, self.eval_miou):
            metric.reset()
        return mious

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        mious = self._log_epoch("val")
        if not self.trainer.sanity_checking and mious["ins_miou"].item() >= self.max_val_ins_miou:
            self.max_val_ins_miou = mious["ins_miou"].item()
            self.log("val_cat_miou_at_max_ins_miou", mious["cat_miou"])

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """-> (B, N) predicted part ids (among each shape's category parts)."""
        points, category = batch[0], batch[1]
        return self.predict_parts(self(self.val_transformations(points), category), category)

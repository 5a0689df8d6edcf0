"""Point-JEPA pretraining: predict teacher features of target blocks from a context block."""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from pointjepa.eval.features import extract_features, linear_svm_accuracy
from pointjepa.modules.backbone import backbone_from_hparams, pooled_features
from pointjepa.modules.ema import EMA
from pointjepa.modules.normalize import NormKind, normalize
from pointjepa.modules.predictor import TransformerPredictor
from pointjepa.modules.samplers import (
    CONTEXT_METHODS,
    TARGET_METHODS,
    ContextMethod,
    TargetMethod,
    check_ratio_range,
    gather_tokens,
    sample_context,
    sample_targets,
)
from pointjepa.modules.sequencer import PointSequencer, SequenceMethod
from pointjepa.modules.transforms import build_task_transforms
from pointjepa.utils.checkpoint import drop_original_extras, load_checkpoint, reset_nan_batchnorm_stats
from pointjepa.utils.optim import warmup_cosine_schedule


def token_std(tokens: torch.Tensor) -> torch.Tensor:
    """(..., C) -> std of every channel over all tokens of the batch, averaged: a collapse warning."""
    return tokens.reshape(-1, tokens.shape[-1]).float().std(0).mean()


class PointJepa(pl.LightningModule):
    """Point-JEPA pretraining module; the constructor arguments are the config keys (SPEC §8)."""

    def __init__(
        self,
        tokenizer_num_groups: int = 64,
        tokenizer_group_size: int = 32,
        tokenizer_group_radius: float | None = None,
        encoder_dim: int = 384,
        encoder_depth: int = 12,
        encoder_heads: int = 6,
        encoder_dropout: float = 0.0,
        encoder_attention_dropout: float = 0.05,
        encoder_drop_path_rate: float = 0.25,
        encoder_add_pos_at_every_layer: bool = True,
        predictor_embed_dim: int = 192,
        predictor_depth: int = 6,
        predictor_heads: int = 6,
        predictor_mlp_ratio: float = 4.0,
        predictor_drop_out: float = 0.0,
        predictor_attention_dropout: float = 0.0,
        predictor_drop_path_rate: float = 0.0,
        predictor_add_target_pos: bool = True,
        predictor_add_pos_at_every_layer: bool = False,
        token_seq_method: SequenceMethod = "iterative_nearest_min_start",
        target_sample_method: TargetMethod = "contiguous",
        num_targets_per_sample: int = 4,
        target_sample_ratio: tuple[float, float] = (0.15, 0.2),
        context_sample_method: ContextMethod = "contiguous",
        context_sample_ratio: tuple[float, float] | None = (0.4, 0.75),
        target_layers: list[int] = [11],
        target_layer_part: Literal["final", "ffn"] = "final",
        target_layer_norm: NormKind | None = "layer",
        target_norm: NormKind | None = None,
        ema_tau_min: float | None = 0.9995,
        ema_tau_max: float | None = 0.99999,
        ema_tau_epochs: int = 500,
        loss: Literal["smooth_l1", "mse"] = "smooth_l1",
        loss_beta: float = 2.0,
        learning_rate: float = 1e-3,
        optimizer_adamw_weight_decay: float = 0.05,
        lr_scheduler_linear_warmup_epochs: int = 30,
        lr_scheduler_linear_warmup_start_lr: float = 1e-5,
        lr_scheduler_cosine_eta_min: float = 1e-6,
        train_transformations: list[str] = ["subsample", "scale", "center", "unit_sphere", "rotate"],
        val_transformations: list[str] = ["subsample", "center", "unit_sphere"],
        transformation_subsample_points: int = 1024,
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
        svm_validation: dict[str, pl.LightningDataModule] = {},
        svm_validation_C: float = 0.012,
        fix_estimated_stepping_batches: int | None = None,
        pretrained_ckpt_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["svm_validation"])
        self._check_options()

        self.train_transformations, self.val_transformations = build_task_transforms(
            self.hparams, transformation_subsample_points
        )
        backbone = backbone_from_hparams(self.hparams)
        self.positional_encoding = backbone.positional_encoding
        self.tokenizer = backbone.tokenizer
        self.student = backbone.encoder
        self.teacher = EMA(
            self.student,
            tau_min=0.0 if ema_tau_min is None else ema_tau_min,
            tau_max=1.0 if ema_tau_max is None else ema_tau_max,
        )
        self.predictor = TransformerPredictor(
            embed_dim=encoder_dim,
            predictor_embed_dim=predictor_embed_dim,
            depth=predictor_depth,
            num_heads=predictor_heads,
            mlp_ratio=predictor_mlp_ratio,
            drop_rate=predictor_drop_out,
            attn_drop_rate=predictor_attention_dropout,
            drop_path_rate=predictor_drop_path_rate,
            add_pos_at_every_layer=predictor_add_pos_at_every_layer,
            add_target_pos=predictor_add_target_pos,
        )
        self.sequencer = PointSequencer(token_seq_method)
        self.loss_func: nn.Module = nn.SmoothL1Loss(beta=loss_beta) if loss == "smooth_l1" else nn.MSELoss()
        self.svm_validation = dict(svm_validation)
        self.target_ratio = check_ratio_range(target_sample_ratio, "target_sample_ratio")
        self.context_ratio = (
            None if context_sample_ratio is None else check_ratio_range(context_sample_ratio, "context_sample_ratio")
        )
        self.mask_generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)

        if pretrained_ckpt_path is not None:
            self.load_pretrained(pretrained_ckpt_path)

    def _check_options(self) -> None:
        hp = self.hparams
        if hp.loss not in ("smooth_l1", "mse"):
            raise ValueError(f"loss: expected 'smooth_l1' or 'mse', got {hp.loss!r}")
        if hp.target_sample_method not in TARGET_METHODS:
            raise ValueError(f"target_sample_method: expected one of {list(TARGET_METHODS)}, got {hp.target_sample_method!r}")
        if hp.context_sample_method not in CONTEXT_METHODS:
            raise ValueError(
                f"context_sample_method: expected one of {list(CONTEXT_METHODS)}, got {hp.context_sample_method!r}"
            )
        if hp.context_sample_method != "rest" and hp.context_sample_ratio is None:
            raise ValueError(f"context_sample_ratio must be set for context_sample_method={hp.context_sample_method!r}")
        if hp.target_layer_part not in ("final", "ffn"):
            raise ValueError(f"target_layer_part: expected 'final' or 'ffn', got {hp.target_layer_part!r}")
        bad_layers = [i for i in hp.target_layers if not -hp.encoder_depth <= i < hp.encoder_depth]
        if not hp.target_layers or bad_layers:
            raise ValueError(
                f"target_layers: expected block indices in [0, {hp.encoder_depth}), got {list(hp.target_layers)}"
            )
        if hp.num_targets_per_sample < 1:
            raise ValueError(f"num_targets_per_sample: expected >= 1, got {hp.num_targets_per_sample}")
        block = max(1, int(hp.target_sample_ratio[1] * hp.tokenizer_num_groups))
        if hp.num_targets_per_sample * block >= hp.tokenizer_num_groups:
            raise ValueError(
                f"num_targets_per_sample={hp.num_targets_per_sample} target blocks of up to {block} of the "
                f"{hp.tokenizer_num_groups} tokens (target_sample_ratio max {hp.target_sample_ratio[1]}) can cover "
                "every token and leave no context: lower one of them"
            )
        for option in ("ema_tau_min", "ema_tau_max"):
            value = hp[option]
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{option}: expected a value in [0, 1], got {value}")

    def load_pretrained(self, path: str) -> None:
        """Load weights (not optimizer state) from a pretraining checkpoint, ours or the original layout.

        The teacher restarts as a copy of the loaded student with its step counter at 0, and NaN
        batch-norm running statistics are reset to 0 (mean) / 1 (variance).
        """
        checkpoint = load_checkpoint(path)
        state_dict = drop_original_extras(checkpoint.get("state_dict", checkpoint))
        result = self.load_state_dict(state_dict, strict=False)
        self.teacher.reset(self.student)
        reset_nan_batchnorm_stats(self)
        rank_zero_info(
            f"Loaded {path}: {len(state_dict) - len(result.unexpected_keys)} tensors; "
            f"missing {list(result.missing_keys) or 'none'}; unexpected {list(result.unexpected_keys) or 'none'}; "
            "teacher restarted as a copy of the student"
        )

    # ---- hooks -----------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            trainer = self.trainer
            max_epochs = trainer.max_epochs
            if max_epochs is None or max_epochs < 1:
                raise ValueError("trainer.max_epochs must be set (>= 1): the EMA and LR schedules are defined over it")
            total_steps = self.hparams.fix_estimated_stepping_batches or trainer.estimated_stepping_batches
            self.teacher.tau_steps = total_steps * (self.hparams.ema_tau_epochs / max_epochs)
        for datamodule in self.svm_validation.values():
            datamodule.setup("fit")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mask_generator_state"] = self.mask_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = drop_original_extras(checkpoint["state_dict"])
        if "mask_generator_state" in checkpoint:
            self.mask_generator.set_state(checkpoint["mask_generator_state"])

    # ---- the JEPA step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def targets(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Teacher features of all tokens: (B, T, C) tokens and positions -> (B, T, C) targets."""
        hp = self.hparams
        output = self.teacher(
            tokens, pos, return_hidden_states=hp.target_layer_part == "final", return_ffns=hp.target_layer_part == "ffn"
        )
        layers = output.hidden_states if hp.target_layer_part == "final" else output.ffns
        chosen = [normalize(layers[i], hp.target_layer_norm) for i in hp.target_layers]
        return normalize(torch.stack(chosen).mean(0), hp.target_norm)

    def jepa_step(self, points: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> predictions and targets, both (B, M, k, C)."""
        hp = self.hparams
        tokens, centers = self.tokenizer(points)
        tokens, centers = self.sequencer(tokens, centers)
        pos = self.positional_encoding(centers)
        targets = self.targets(tokens, pos)

        num_tokens = tokens.shape[1]
        target_positions = sample_targets(
            num_tokens, hp.num_targets_per_sample, self.target_ratio, hp.target_sample_method, generator
        )
        context_positions = sample_context(
            num_tokens, target_positions, self.context_ratio, hp.context_sample_method, generator
        )
        context = self.student(gather_tokens(tokens, context_positions), gather_tokens(pos, context_positions))
        predictions = self.predictor(
            context.last_hidden_state,
            gather_tokens(centers, context_positions),
            gather_tokens(centers, target_positions),
        )
        return predictions, gather_tokens(targets, target_positions)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        points = self.train_transformations(batch[0])
        predictions, targets = self.jepa_step(points, self.mask_generator)
        loss = self.loss_func(predictions.float(), targets.float())
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_pred_std", token_std(predictions.detach()))
        self.log("train_target_std", token_std(targets))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_generator = torch.Generator().manual_seed(0)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        points = self.val_transformations(batch[0])
        predictions, targets = self.jepa_step(points, self._val_generator)
        self.log("val_loss", self.loss_func(predictions.float(), targets.float()), sync_dist=True, prog_bar=True)
        self.log("val_pred_std", token_std(predictions), sync_dist=True)
        self.log("val_target_std", token_std(targets), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for name, datamodule in self.svm_validation.items():
            accuracies = torch.zeros(2, device=self.device)
            if self.trainer.is_global_zero:
                accuracies = torch.tensor(self.svm_accuracy(datamodule), device=self.device)
            accuracies = self.trainer.strategy.broadcast(accuracies, src=0)
            self.log(f"svm_train_acc_{name}", accuracies[0], sync_dist=True)  # the same on every rank
            self.log(f"svm_val_acc_{name}", accuracies[1], sync_dist=True, prog_bar=True)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.log("ema_decay", self.teacher.update(self.student))

    # ---- features and SVM ------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) -> student features (B, 2C): max and mean over tokens, val transforms applied."""
        tokens, centers = self.tokenizer(self.val_transformations(points))
        return pooled_features(self.student(tokens, self.positional_encoding(centers)).last_hidden_state)

    def svm_accuracy(self, datamodule: pl.LightningDataModule) -> tuple[float, float]:
        """Linear SVM on student features of ``datamodule``'s train and val splits -> (train acc, val acc)."""
        was_training = self.training
        self.eval()
        try:
            x_train, y_train = extract_features(self.embed, datamodule.train_dataloader(), self.device)
            x_val, y_val = extract_features(self.embed, datamodule.val_dataloader(), self.device)
        finally:
            self.train(was_training)
        return linear_svm_accuracy(x_train, y_train, x_val, y_val, C=self.hparams.svm_validation_C)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        trainer = self.trainer
        if hp.fix_estimated_stepping_batches is not None and trainer.estimated_stepping_batches != hp.fix_estimated_stepping_batches:
            raise ValueError(
                f"fix_estimated_stepping_batches={hp.fix_estimated_stepping_batches} differs from the trainer's "
                f"{trainer.estimated_stepping_batches} estimated steps"
            )
        optimizer = torch.optim.AdamW(
            (p for p in self.parameters() if p.requires_grad),
            lr=hp.learning_rate,
            weight_decay=hp.optimizer_adamw_weight_decay,
            fused=self.device.type == "cuda",
        )
        scheduler = warmup_cosine_schedule(
            optimizer,
            warmup_epochs=hp.lr_scheduler_linear_warmup_epochs,
            max_epochs=trainer.max_epochs,
            warmup_start_lr=hp.lr_scheduler_linear_warmup_start_lr,
            eta_min=hp.lr_scheduler_cosine_eta_min,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

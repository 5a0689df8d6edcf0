"""Point-JEPA pretraining: predict teacher features of target blocks from a context block."""

from __future__ import annotations

from typing import Any, Literal, get_args

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from pointjepa.metrics.collapse import token_std
from pointjepa.metrics.svm import svm_probe
from pointjepa.models.base import BackboneModule
from pointjepa.modules.backbone import backbone_from_hparams, pooled_features
from pointjepa.modules.compile import compile_step_modules
from pointjepa.modules.ema import EMA
from pointjepa.modules.freezing import block_indices
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
from pointjepa.utils.options import check_choice

Loss = Literal["smooth_l1", "mse"]
LayerPart = Literal["final", "ffn"]
LOSSES: tuple[str, ...] = get_args(Loss)
LAYER_PARTS: tuple[str, ...] = get_args(LayerPart)


class PointJepa(BackboneModule):
    """Point-JEPA pretraining; the constructor arguments are the original config keys.

    Points (B, N, 3) are transformed, tokenized and put in sequence; from the student's encoding of a context
    block, the predictor predicts the features of target blocks that the teacher (an EMA of the student) gives.

    Args:
        encoder_attention_dropout: dropout on the encoder's attention weights.
        encoder_drop_path_rate: stochastic depth of the last encoder block (rising linearly from 0).
        lr_scheduler_linear_warmup_epochs: linear warm-up epochs before the cosine decay.
        lr_scheduler_linear_warmup_start_lr: learning rate at the first warm-up epoch.
        train_transformations: transforms of training clouds.
        val_transformations: transforms of evaluation clouds (and of the features ``embed`` gives).
        predictor_embed_dim: predictor width D.
        predictor_depth: predictor blocks.
        predictor_heads: predictor attention heads.
        predictor_mlp_ratio: predictor MLP hidden width / D.
        predictor_drop_out: dropout in the predictor blocks.
        predictor_attention_dropout: dropout on the predictor's attention weights.
        predictor_drop_path_rate: stochastic depth of every predictor block.
        predictor_add_target_pos: give context tokens their positional embedding in the predictor (else zeros).
        predictor_add_pos_at_every_layer: add positions before every predictor block.
        token_seq_method: token order: ``iterative_nearest``, ``iterative_nearest_min_start`` or ``morton``.
        target_sample_method: target blocks as ``contiguous`` runs of the sequence or ``random`` subsets.
        num_targets_per_sample: target blocks M per cloud.
        target_sample_ratio: [min, max] of the share of tokens in each target block (drawn once per step).
        context_sample_method: of the tokens in no target block, a ``contiguous`` run, ``random`` ones or the ``rest``.
        context_sample_ratio: [min, max] of the share of those tokens in the context (null with ``rest``).
        target_layers: teacher blocks whose outputs, averaged, are the targets.
        target_layer_part: ``final`` (block outputs) or ``ffn`` (MLP outputs).
        target_layer_norm: normalisation of each chosen layer: layer, instance, group, batch or null.
        target_norm: normalisation of their average (same choices).
        ema_tau_min: teacher EMA decay at the first step (null: 0).
        ema_tau_max: teacher EMA decay at the end of the ramp (null: 1).
        ema_tau_epochs: length of the linear decay ramp in epochs.
        loss: ``smooth_l1`` or ``mse`` between predictions and targets.
        loss_beta: the smooth L1 loss's beta.
        transformation_subsample_points: points kept by the ``subsample`` transform.
        svm_validation: name -> data module to log ``svm_train_acc_<name>``, ``svm_val_acc_<name>`` of (not saved).
        svm_validation_C: the SVM's C.
        fix_estimated_stepping_batches: the optimizer steps the run must have (checked when fitting starts).
        torch_compile: `torch.compile` the student, teacher, predictor and mini-PointNet (``compile_step_modules``).
    """

    hparams_ignore = ("svm_validation",)
    fused_adamw = True

    def __init__(
        self,
        encoder_attention_dropout: float = 0.05,
        encoder_drop_path_rate: float = 0.25,
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
        target_layer_part: LayerPart = "final",
        target_layer_norm: NormKind | None = "layer",
        target_norm: NormKind | None = None,
        ema_tau_min: float | None = 0.9995,
        ema_tau_max: float | None = 0.99999,
        ema_tau_epochs: int = 500,
        loss: Loss = "smooth_l1",
        loss_beta: float = 2.0,
        lr_scheduler_linear_warmup_epochs: int = 30,
        lr_scheduler_linear_warmup_start_lr: float = 1e-5,
        train_transformations: list[str] = ["subsample", "scale", "center", "unit_sphere", "rotate"],
        val_transformations: list[str] = ["subsample", "center", "unit_sphere"],
        transformation_subsample_points: int = 1024,
        svm_validation: dict[str, pl.LightningDataModule] = {},
        svm_validation_C: float = 0.012,
        fix_estimated_stepping_batches: int | None = None,
        torch_compile: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            encoder_attention_dropout=encoder_attention_dropout,
            encoder_drop_path_rate=encoder_drop_path_rate,
            lr_scheduler_linear_warmup_epochs=lr_scheduler_linear_warmup_epochs,
            lr_scheduler_linear_warmup_start_lr=lr_scheduler_linear_warmup_start_lr,
            train_transformations=train_transformations,
            val_transformations=val_transformations,
            **kwargs,
        )
        self.num_targets = num_targets_per_sample
        self.target_method, self.context_method = target_sample_method, context_sample_method
        self.target_ratio = check_ratio_range(target_sample_ratio, "target_sample_ratio")
        ratio = context_sample_ratio
        self.context_ratio = None if ratio is None else check_ratio_range(ratio, "context_sample_ratio")
        self.target_layers = block_indices(target_layers, self.encoder_depth, "target_layers", allow_empty=False)
        self.target_layer_part, self.target_layer_norm = target_layer_part, target_layer_norm
        self.target_norm, self.ema_tau_epochs = target_norm, ema_tau_epochs
        self.fix_estimated_stepping_batches, self.svm_C = fix_estimated_stepping_batches, svm_validation_C
        self._check_options(loss)

        transforms = build_task_transforms(self.hparams, transformation_subsample_points)
        self.train_transformations, self.val_transformations = transforms
        backbone = backbone_from_hparams(self.hparams)
        self.positional_encoding = backbone.positional_encoding
        self.tokenizer = backbone.tokenizer
        self.student = backbone.encoder
        tau_min, tau_max = 0.0 if ema_tau_min is None else ema_tau_min, 1.0 if ema_tau_max is None else ema_tau_max
        self.teacher = EMA(self.student, tau_min=tau_min, tau_max=tau_max)
        self.predictor = TransformerPredictor(
            embed_dim=self.encoder_dim,
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
        self.mask_generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        if torch_compile:
            compile_step_modules(self.student, self.teacher.ema_model, self.predictor, self.tokenizer.embedding)

    def _check_options(self, loss: str) -> None:
        check_choice("loss", loss, LOSSES)
        check_choice("target_sample_method", self.target_method, TARGET_METHODS)
        check_choice("context_sample_method", self.context_method, CONTEXT_METHODS)
        check_choice("target_layer_part", self.target_layer_part, LAYER_PARTS)
        if self.context_method != "rest" and self.context_ratio is None:
            raise ValueError(f"context_sample_ratio must be set for context_sample_method={self.context_method!r}")
        if self.num_targets < 1:
            raise ValueError(f"num_targets_per_sample: expected >= 1, got {self.num_targets}")
        block = max(1, int(self.target_ratio[1] * self.num_tokens))
        if self.num_targets * block >= self.num_tokens:
            raise ValueError(
                f"num_targets_per_sample={self.num_targets} target blocks of up to {block} of the {self.num_tokens} "
                f"tokens (target_sample_ratio max {self.target_ratio[1]}) can cover every token and leave no context: "
                "lower one of them"
            )

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

    def setup(self, stage: str) -> None:
        super().setup(stage)
        for datamodule in self.svm_validation.values():
            datamodule.setup("fit")
        if stage == "fit":
            max_epochs = self.trainer.max_epochs
            if max_epochs is None or max_epochs < 1:
                raise ValueError("trainer.max_epochs must be set (>= 1): the EMA and LR schedules are defined over it")
            total_steps = self.fix_estimated_stepping_batches or self.trainer.estimated_stepping_batches
            self.teacher.tau_steps = total_steps * (self.ema_tau_epochs / max_epochs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mask_generator_state"] = self.mask_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        checkpoint["state_dict"] = drop_original_extras(checkpoint["state_dict"])
        if "mask_generator_state" in checkpoint:
            self.mask_generator.set_state(checkpoint["mask_generator_state"])

    @torch.no_grad()
    def targets(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Teacher features of all tokens: (B, T, C) tokens and positions -> (B, T, C) targets."""
        final = self.target_layer_part == "final"
        output = self.teacher(tokens, pos, return_hidden_states=final, return_ffns=not final)
        layers = output.hidden_states if final else output.ffns
        chosen = [normalize(layers[i], self.target_layer_norm) for i in self.target_layers]
        return normalize(torch.stack(chosen).mean(0), self.target_norm)

    def jepa_step(self, points: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> predictions and targets, both (B, M, k, C)."""
        tokens, centers = self.tokenizer(points)
        tokens, centers = self.sequencer(tokens, centers)
        pos = self.positional_encoding(centers)
        targets = self.targets(tokens, pos)

        num_tokens = tokens.shape[1]
        targets_at = sample_targets(num_tokens, self.num_targets, self.target_ratio, self.target_method, generator)
        context_at = sample_context(num_tokens, targets_at, self.context_ratio, self.context_method, generator)
        context = self.student(gather_tokens(tokens, context_at), gather_tokens(pos, context_at))
        predictions = self.predictor(
            context.last_hidden_state, gather_tokens(centers, context_at), gather_tokens(centers, targets_at)
        )
        return predictions, gather_tokens(targets, targets_at)

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

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.log("ema_decay", self.teacher.update(self.student))

    def configure_optimizers(self) -> Any:
        """The shared AdamW and schedule, after checking ``fix_estimated_stepping_batches`` (used in ``setup``)."""
        estimated, fixed = self.trainer.estimated_stepping_batches, self.fix_estimated_stepping_batches
        if fixed not in (None, estimated):
            raise ValueError(
                f"fix_estimated_stepping_batches={fixed} differs from the trainer's {estimated} estimated steps"
            )
        return super().configure_optimizers()

    def optimizer_parameters(self) -> list[torch.Tensor]:
        """The trainable parameters: not the teacher's."""
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def embed(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) -> student features (B, 2C): max and mean over tokens, val transforms applied."""
        tokens, centers = self.tokenizer(self.val_transformations(points))
        return pooled_features(self.student(tokens, self.positional_encoding(centers)).last_hidden_state)

    def on_validation_epoch_end(self) -> None:
        """SVM validation: logs ``svm_train_acc_<name>`` and ``svm_val_acc_<name>`` of ``svm_probe`` for each
        ``svm_validation`` data module; the first process fits the SVMs, the others get its accuracies."""
        if self.trainer.sanity_checking:
            return
        for name, datamodule in self.svm_validation.items():
            accuracies = (float("nan"), float("nan"))  # the other ranks get rank 0's
            if self.global_rank == 0:
                accuracies = svm_probe(self.embed, datamodule, self.device, self.svm_C)
            train_acc, val_acc = self.trainer.strategy.broadcast(accuracies, src=0)
            self.log(f"svm_train_acc_{name}", train_acc, sync_dist=True)  # the same on every rank
            self.log(f"svm_val_acc_{name}", val_acc, sync_dist=True, prog_bar=True)

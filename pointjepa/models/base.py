"""What the task modules share: the backbone and transform config keys, AdamW with a linear warm-up and cosine
decay, pretrained weights loaded once when fitting starts, scheduled unfreezing and W&B metric summaries."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info

from pointjepa.modules.freezing import Trainable, UnfreezeSchedule, apply_trainable
from pointjepa.utils.optim import warmup_cosine_schedule
from pointjepa.utils.pretrained import load_backbone


class BackboneModule(pl.LightningModule):
    """Base of the task modules: a task declares its own keys and passes the shared ones on as ``**kwargs``
    (the config stays flat); it builds its backbone and transforms from ``hparams`` (``backbone_from_hparams``,
    ``build_task_transforms``) under the checkpoint's attribute names.

    Args:
        tokenizer_num_groups: tokens per cloud.
        tokenizer_group_size: points per token group.
        tokenizer_group_radius: ball-query radius (null: kNN groups).
        encoder_dim: token width C.
        encoder_depth: transformer blocks.
        encoder_heads: attention heads.
        encoder_dropout: dropout in the blocks.
        encoder_attention_dropout: dropout on attention weights.
        encoder_drop_path_rate: stochastic depth of the last block (rising linearly from 0).
        encoder_add_pos_at_every_layer: add the positional encoding before every block.
        learning_rate: AdamW learning rate.
        optimizer_adamw_weight_decay: AdamW weight decay.
        lr_scheduler_linear_warmup_epochs: linear warm-up epochs before the cosine decay.
        lr_scheduler_linear_warmup_start_lr: learning rate at the first warm-up epoch.
        lr_scheduler_cosine_eta_min: learning rate reached at max_epochs.
        pretrained_ckpt_path: weights loaded when fitting starts (any supported checkpoint layout); a model
            restored from a checkpoint keeps the checkpoint's weights.
        train_transformations: transforms of training clouds (subsample, scale, center, unit_sphere, rotate,
            translate, height_norm).
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
        fps_random_start_in_eval: FPS (``subsample`` and the tokenizer) starts at a random point in eval mode
            too, as in the original.
    """

    #: Constructor arguments kept out of ``hparams`` and checkpoints (data modules).
    hparams_ignore: ClassVar[tuple[str, ...]] = ()
    #: Logged metrics whose W&B run summary holds their last and their maximum value.
    summary_metrics: ClassVar[tuple[str, ...]] = ()
    #: Fused AdamW on a GPU or CPU (else torch's default implementation).
    fused_adamw: ClassVar[bool] = False

    def __init__(
        self,
        tokenizer_num_groups: int = 64,
        tokenizer_group_size: int = 32,
        tokenizer_group_radius: float | None = None,
        encoder_dim: int = 384,
        encoder_depth: int = 12,
        encoder_heads: int = 6,
        encoder_dropout: float = 0.0,
        encoder_attention_dropout: float = 0.0,
        encoder_drop_path_rate: float = 0.2,
        encoder_add_pos_at_every_layer: bool = True,
        learning_rate: float = 1e-3,
        optimizer_adamw_weight_decay: float = 0.05,
        lr_scheduler_linear_warmup_epochs: int = 10,
        lr_scheduler_linear_warmup_start_lr: float = 1e-6,
        lr_scheduler_cosine_eta_min: float = 1e-6,
        pretrained_ckpt_path: str | None = None,
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.hparams_ignore))
        self.num_tokens, self.encoder_dim, self.encoder_depth = tokenizer_num_groups, encoder_dim, encoder_depth
        self.fps_random_start_in_eval = fps_random_start_in_eval
        self.learning_rate, self.weight_decay = learning_rate, optimizer_adamw_weight_decay
        self.warmup_epochs, self.eta_min = lr_scheduler_linear_warmup_epochs, lr_scheduler_cosine_eta_min
        self.warmup_start_lr = lr_scheduler_linear_warmup_start_lr
        self.pretrained_ckpt_path = pretrained_ckpt_path
        self._pretrained_loaded = False
        #: What trains in which epoch (None: everything, always); subclasses that freeze set it.
        self.unfreeze_schedule: UnfreezeSchedule | None = None
        self._trainable: Trainable | None = None

    @classmethod
    def config_keys(cls) -> list[str]:
        """The task's config keys: its own constructor arguments, then the shared ones it passes on."""
        keys: list[str] = []
        classes: tuple[type[object], ...] = cls.__mro__[: cls.__mro__.index(BackboneModule) + 1]
        for klass in classes:
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if name != "self" and parameter.kind is parameter.POSITIONAL_OR_KEYWORD and name not in keys:
                    keys.append(name)
        return keys

    # ---- pretrained weights ------------------------------------------------------------------------
    def load_pretrained(self, path: str) -> None:
        """Backbone weights (``tokenizer``, ``positional_encoding``, ``encoder``) of a checkpoint of any
        supported layout; the task's other modules stay as they are."""
        load_backbone(self, path)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.pretrained_ckpt_path is not None and not self._pretrained_loaded:
            self.load_pretrained(self.pretrained_ckpt_path)
            self._pretrained_loaded = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._pretrained_loaded = True  # the checkpoint's weights replace the pretrained ones

    # ---- fit hooks and optimization ----------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Declares ``summary_metrics`` to W&B loggers, so a run's summary holds their last and best value."""
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                for name in self.summary_metrics:
                    logger.experiment.define_metric(name, summary="last,max")

    def on_train_epoch_start(self) -> None:
        """Trains the backbone parts that ``unfreeze_schedule`` gives for this epoch (a pure function of the
        epoch, so a resumed run reaches the same state); reports every change."""
        if self.unfreeze_schedule is not None:
            trainable = self.unfreeze_schedule.trainable(self.current_epoch, self.trainer.max_epochs or 1)
            if trainable != self._trainable:
                apply_trainable(trainable, self)
                rank_zero_info(f"epoch {self.current_epoch}: training {trainable}")
                self._trainable = trainable

    def optimizer_parameters(self) -> Iterable[torch.Tensor] | list[dict[str, Any]]:
        """What AdamW optimizes: parameters or parameter groups (default: every parameter)."""
        return self.parameters()

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.optimizer_parameters(),
            lr=self.learning_rate,
            weight_decay=self.weight_decay,
            fused=self.fused_adamw and self.device.type in ("cuda", "cpu") or None,
        )
        max_epochs = self.trainer.max_epochs
        if max_epochs is None:  # Lightning resolves it when fitting starts
            raise ValueError("trainer.max_epochs: the learning-rate schedule needs a number of epochs, got None")
        scheduler = warmup_cosine_schedule(
            optimizer,
            warmup_epochs=self.warmup_epochs,
            max_epochs=max_epochs,
            warmup_start_lr=self.warmup_start_lr,
            eta_min=self.eta_min,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

"""What many test modules share: tiny models, data and command lines at `BoringModel` size, a checkpoint
writer and a logger with W&B's ``log_image``. Test modules import the builders; ``image_logger`` is a fixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger

from pointjepa.datasets import SyntheticShapesDataModule
from pointjepa.models.classification import PointJepaClassification
from pointjepa.models.point_jepa import PointJepa

ROOT = Path(__file__).resolve().parents[1]
#: The tiny backbone: 8 groups of 4 points, 2 blocks of width 32 with 4 heads.
BACKBONE: dict[str, Any] = dict(
    tokenizer_num_groups=8, tokenizer_group_size=4, encoder_dim=32, encoder_depth=2, encoder_heads=4
)
#: A tiny `PointJepa`: a one-block predictor, two target blocks from block 1, clouds subsampled to 64 points.
PRETRAINING: dict[str, Any] = dict(
    **BACKBONE,
    predictor_embed_dim=16,
    predictor_depth=1,
    predictor_heads=2,
    target_layers=[1],
    num_targets_per_sample=2,
    target_sample_ratio=(0.15, 0.25),
    transformation_subsample_points=64,
)
#: A tiny classifier for ``tiny_shapes`` (5 classes) on the tiny backbone.
CLASSIFIER: dict[str, Any] = dict(num_classes=5, num_points=64, **BACKBONE, cls_head_dim=16)
#: ``CLASSIFIER`` as command-line overrides (the data module links ``num_classes``).
CLASSIFIER_ARGS = [f"--model.{k}={v}" for k, v in CLASSIFIER.items() if k != "num_classes"]
#: A tiny part segmenter (groups of 8, 2 heads); add the data's linked keys ``num_classes``,
#: ``num_seg_classes`` and ``category_to_parts``.
SEGMENTER: dict[str, Any] = dict(
    tokenizer_num_groups=8,
    tokenizer_group_size=8,
    encoder_dim=32,
    encoder_depth=2,
    encoder_heads=2,
    seg_head_fetch_layers=[0, 1],
    seg_head_dim=16,
)
#: Overrides of ``configs/demo/pretraining.yaml`` for a tiny, quiet command-line run.
DEMO_PRETRAINING_ARGS = [
    "--model.tokenizer_num_groups=8",
    "--model.tokenizer_group_size=8",
    "--model.encoder_dim=32",
    "--model.encoder_depth=2",
    "--model.encoder_heads=2",
    "--model.predictor_embed_dim=16",
    "--model.predictor_depth=1",
    "--model.predictor_heads=2",
    "--model.target_layers=[1]",
    "--model.num_targets_per_sample=2",
    "--model.transformation_subsample_points=64",
    "--model.lr_scheduler_linear_warmup_epochs=2",
    "--data.init_args.num_points=128",
    "--data.init_args.samples_per_class=2",
    "--data.init_args.val_samples_per_class=1",
    "--data.init_args.batch_size=8",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.check_val_every_n_epoch=1",
]
#: A dropout-free `PointJepa` (16 groups of 8, a two-block predictor) for comparing the fast paths with
#: the references of ``tests/reference.py``.
SMALL_PRETRAINING: dict[str, Any] = dict(
    tokenizer_num_groups=16,
    tokenizer_group_size=8,
    encoder_dim=32,
    encoder_depth=2,
    encoder_heads=4,
    encoder_dropout=0.0,
    encoder_attention_dropout=0.0,
    encoder_drop_path_rate=0.0,
    predictor_embed_dim=16,
    predictor_depth=2,
    predictor_heads=2,
    target_layers=[1],
    transformation_subsample_points=128,
)
SHAPES = ["sphere", "cube", "cone", "torus", "disk"]


def tiny_pretraining(**overrides: Any) -> PointJepa:
    """A `PointJepa` with the ``PRETRAINING`` keys, ``overrides`` on top."""
    return PointJepa(**{**PRETRAINING, **overrides})


def tiny_classifier(**overrides: Any) -> PointJepaClassification:
    """A `PointJepaClassification` with the ``CLASSIFIER`` keys, ``overrides`` on top."""
    return PointJepaClassification(**{**CLASSIFIER, **overrides})


def tiny_shapes(**overrides: Any) -> SyntheticShapesDataModule:
    """Synthetic ``SHAPES`` of 96 points: 2 training and 1 validation sample per class, batches of 4."""
    args = dict(num_points=96, samples_per_class=2, val_samples_per_class=1, shapes=SHAPES, batch_size=4)
    return SyntheticShapesDataModule(**{**args, **overrides})


def quiet_trainer(**options: Any) -> pl.Trainer:
    """A ``pl.Trainer`` without logger, progress bar or model summary, ``options`` on top."""
    return pl.Trainer(**{"logger": False, "enable_progress_bar": False, "enable_model_summary": False, **options})


def save_checkpoint(model: pl.LightningModule, path: Path) -> Path:
    """Write the two entries pretrained-weight loading reads (``state_dict``, ``hyper_parameters``)."""
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


class ImageLogger(Logger):
    """A logger with W&B's ``log_image`` signature, keeping every image it gets under its key."""

    name, version = "images", 0

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, list] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        self.images.setdefault(key, []).extend(images)


@pytest.fixture
def image_logger() -> ImageLogger:
    return ImageLogger()

"""PointJepaPartSegmentation: checkpoint names, forward, freezing, pretrained loading, synthetic parts,
and real ``fit`` runs of the published and demo configs on generated data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from pointjepa.datasets.synthetic_parts import SyntheticPartsDataModule, make_part_shapes
from pointjepa.models.part_segmentation import PointJepaPartSegmentation
from pointjepa.modules.backbone import build_backbone
from pointjepa.tasks.part_segmentation import PartSegmentationCLI
from tests.conftest import SEGMENTER, quiet_trainer
from tests.fakedata import write_shapenetpart

ROOT = Path(__file__).resolve().parents[1]
TABLE = {"mushroom": [0, 1], "airplane": [2, 3, 4]}


def tiny_model(**kwargs: object) -> PointJepaPartSegmentation:
    linked = {"num_classes": 2, "num_seg_classes": 5, "category_to_parts": TABLE}
    return PointJepaPartSegmentation(**{**SEGMENTER, **linked, **kwargs})


def tiny_data(**kwargs: object) -> SyntheticPartsDataModule:
    args = dict(num_points=64, samples_per_category=4, val_samples_per_category=2, categories=list(TABLE), batch_size=4)
    return SyntheticPartsDataModule(**{**args, **kwargs})


def test_state_dict_uses_original_names() -> None:
    keys = set(tiny_model().state_dict())
    expected = {
        "label_embedding.0.weight", "label_embedding.1.weight", "label_embedding.1.running_var",
        "upsampling.mlp_convs.0.weight", "upsampling.mlp_convs.1.weight", "upsampling.mlp_bns.1.running_mean",
        "seg_head.0.weight", "seg_head.1.weight", "seg_head.4.weight", "seg_head.5.bias", "seg_head.7.weight",
        "seg_head.7.bias", "encoder.blocks.1.attn.qkv.weight", "encoder.norm.weight", "positional_encoding.2.weight",
        "tokenizer.embedding.encoder.first_conv.0.weight",
    }  # fmt: skip
    assert expected <= keys
    assert "label_embedding.0.bias" not in keys and "seg_head.0.bias" not in keys and "part_mask" not in keys


def test_shapenetpart_defaults_build_the_published_head() -> None:
    model = PointJepaPartSegmentation(encoder_depth=1, seg_head_fetch_layers=[0])
    assert model.seg_head[0].in_channels == 2 * 384 + 64 + 384 and model.seg_head[7].out_channels == 50
    assert model.label_embedding[0].in_features == 16 and model.part_mask.sum().item() == 50


def test_forward_gives_log_probabilities_and_restricted_predictions() -> None:
    model = tiny_model().eval()
    points, category = torch.randn(3, 64, 3), torch.tensor([0, 1, 1])
    log_probs = model(points, category)
    assert log_probs.shape == (3, 64, 5)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 64), atol=1e-5)
    pred = model.predict_parts(log_probs, category)
    assert (pred[0] <= 1).all() and (pred[1:] >= 2).all()


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="seg_head_fetch_layers"):
        tiny_model(seg_head_fetch_layers=[2])
    with pytest.raises(ValueError, match="category_to_parts"):
        tiny_model(num_classes=3)
    with pytest.raises(ValueError, match="category_to_parts: category 'airplane'"):
        tiny_model(num_seg_classes=4)


def test_pretrained_backbone_is_loaded(tmp_path: Path) -> None:
    backbone = build_backbone(num_groups=8, group_size=8, dim=32, depth=2, heads=2)
    state = {f"student.{k}": v for k, v in backbone.encoder.state_dict().items()}
    state.update({f"tokenizer.{k}": v for k, v in backbone.tokenizer.state_dict().items()})
    state.update({f"positional_encoding.{k}": v for k, v in backbone.positional_encoding.state_dict().items()})
    torch.save({"state_dict": state}, tmp_path / "pretrained.ckpt")
    model = tiny_model(pretrained_ckpt_path=str(tmp_path / "pretrained.ckpt"))
    model.setup("fit")  # weights load when fitting starts, not in load_from_checkpoint
    assert torch.equal(model.encoder.blocks[1].attn.qkv.weight, backbone.encoder.blocks[1].attn.qkv.weight)
    first_conv = backbone.tokenizer.embedding.encoder.first_conv[0].weight
    assert torch.equal(model.tokenizer.embedding.encoder.first_conv[0].weight, first_conv)


class RecordEncoderTrainable(pl.Callback):
    def __init__(self) -> None:
        self.trainable: list[bool] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *args: object) -> None:
        self.trainable.append(all(p.requires_grad for p in module.encoder.parameters()))


def test_encoder_frozen_until_unfreeze_epoch_then_metrics_logged() -> None:
    model = tiny_model(encoder_unfreeze_epoch=1)
    before = model.encoder.blocks[0].mlp.fc1.weight.detach().clone()
    record = RecordEncoderTrainable()
    trainer = quiet_trainer(
        max_epochs=2, limit_train_batches=1, limit_val_batches=1, enable_checkpointing=False, callbacks=[record]
    )
    trainer.fit(model, tiny_data())
    assert record.trainable == [False, True]
    assert not torch.equal(before, model.encoder.blocks[0].mlp.fc1.weight)
    metrics = trainer.callback_metrics
    for name in (
        "val_acc",
        "val_macc",
        "val_ins_miou",
        "val_cat_miou",
        "val_cat_miou_at_max_ins_miou",
        "train_loss",
        "train_acc",
    ):
        assert name in metrics and torch.isfinite(metrics[name])


def test_predict_returns_parts_of_the_category() -> None:
    data = tiny_data()
    trainer = quiet_trainer()
    data.setup()
    (pred,) = trainer.predict(tiny_model(), data.val_dataloader())[:1]
    category = data.val_dataset.tensors[1][: pred.shape[0]]
    allowed = torch.tensor([[True, True, False, False, False], [False, False, True, True, True]])
    assert pred.shape == (4, 64) and allowed[category].gather(1, pred).all()


def test_synthetic_parts_are_deterministic_and_labelled_by_category() -> None:
    a, b = make_part_shapes(["table", "lamp"], 3, 128, seed=5), make_part_shapes(["table", "lamp"], 3, 128, seed=5)
    assert all(torch.equal(torch.from_numpy(x), torch.from_numpy(y)) for x, y in zip(a, b))
    points, category, seg = a
    assert points.shape == (6, 128, 3) and points.dtype.name == "float32" and seg.dtype.name == "int64"
    data = SyntheticPartsDataModule(categories=["table", "lamp"])
    assert data.category_to_parts == {"table": [0, 1], "lamp": [2, 3, 4]} and data.num_seg_classes == 5
    for label, parts in enumerate(data.category_to_parts.values()):
        assert set(seg[category == label].ravel().tolist()) == set(parts)  # every part present, no other
    with pytest.raises(ValueError, match="categories"):
        SyntheticPartsDataModule(categories=["teapot"])


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI runs in-process with ``args=``; pytest's own arguments are not for it."""
    monkeypatch.setattr(sys, "argv", ["part_segmentation"])


def test_cli_names_a_data_module_without_parts() -> None:
    with pytest.raises(ValueError, match="num_seg_classes"):
        PartSegmentationCLI(
            args=["--data=pointjepa.datasets.SyntheticShapesDataModule", "--trainer.logger=false"], run=False
        )


def run_fit(config: str, tmp_path: Path, *overrides: str) -> None:
    """``python -m pointjepa.tasks.part_segmentation fit -c <config>`` for 2 batches, in-process."""
    args = [
        "fit", "-c", str(ROOT / config),
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"), *overrides,
    ]  # fmt: skip
    PartSegmentationCLI(args=args)
    checkpoints = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
    assert "last.ckpt" in checkpoints and len(checkpoints) == 2  # last and best val_cat_miou


def test_published_config_fits_on_shapenetpart_files(tmp_path: Path) -> None:
    data_dir = write_shapenetpart(tmp_path, categories=("Airplane", "Lamp"), n_train=2, n_val=1, n_test=2)
    run_fit(
        "configs/Point-JEPA/segmentation/shapenetpart.yaml", tmp_path,
        "--trainer.precision", "32-true", "--trainer.num_sanity_val_steps", "0",
        "--data.init_args.data_dir", str(data_dir), "--data.init_args.num_points", "512",
        "--data.init_args.batch_size", "2", "--data.init_args.pin_memory", "false",
    )  # fmt: skip


def test_demo_config_fits_on_synthetic_parts(tmp_path: Path) -> None:
    run_fit(
        "configs/demo/part_segmentation.yaml", tmp_path,
        "--data.init_args.samples_per_category", "2", "--data.init_args.val_samples_per_category", "1",
        "--data.init_args.batch_size", "4",
    )  # fmt: skip

"""Figure commands (confusion matrix, t-SNE, target/context blocks), their image-logging callbacks and
the README figures, on tiny checkpoints and generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger

from pointjepa.callbacks.image_loggers import (
    ConfusionMatrixImageLogger,
    EmbeddingTSNEImageLogger,
    TargetContextImageLogger,
)
from pointjepa.datasets import SyntheticShapesDataModule
from pointjepa.eval import embedding_cluster_vis, plot_confusion, target_context_vis
from pointjepa.models.classification import PointJepaClassification
from pointjepa.models.point_jepa import PointJepa
from pointjepa.utils.checkpoint import CheckpointError
from pointjepa.viz import CONTEXT, REST, choose_blocks, confusion_figure
from tests.conftest import quiet_trainer, save_checkpoint, tiny_classifier, tiny_pretraining
from tests.fakedata import write_modelnet40

ROOT = Path(__file__).resolve().parents[1]
FIGURE_GROUPS = dict(tokenizer_num_groups=16, tokenizer_group_size=8)  # the block shapes asserted below
SHAPES = ["sphere", "cube", "cone", "torus", "disk"]
SYNTHETIC = [
    "--data.class_path=pointjepa.datasets.SyntheticShapesDataModule",
    "--data.init_args.num_points=128",
    "--data.init_args.samples_per_class=3",
    "--data.init_args.val_samples_per_class=2",
    f"--data.init_args.shapes={SHAPES}",
    "--data.init_args.batch_size=4",
]


def pretraining() -> PointJepa:
    return tiny_pretraining(**FIGURE_GROUPS, num_targets_per_sample=3, transformation_subsample_points=96)


def classifier(num_classes: int = 5) -> PointJepaClassification:
    return tiny_classifier(**FIGURE_GROUPS, num_classes=num_classes)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    return {
        "pretraining": save_checkpoint(pretraining(), root / "pretraining.ckpt"),
        "classification": save_checkpoint(classifier(), root / "classification.ckpt"),
        "modelnet40": save_checkpoint(classifier(40), root / "modelnet40.ckpt"),
    }


def assert_png(path: Path, min_side: int = 200, max_side: int = 3000) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min_side <= min(image.size) and max(image.size) <= max_side
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # something is drawn, not a blank canvas
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left behind


# ---- commands ----------------------------------------------------------------------------------------------
def test_plot_confusion_writes_a_png_of_the_predictions(ckpts, tmp_path):
    out = plot_confusion.main(
        ["--ckpt", str(ckpts["classification"]), *SYNTHETIC, "--output", str(tmp_path / "cm.png")]
    )
    assert out == tmp_path / "cm.png"
    assert_png(out)


def test_plot_confusion_refuses_a_data_module_without_classes(ckpts, tmp_path):
    args = ["--ckpt", str(ckpts["classification"]), "--output", str(tmp_path / "cm.png")]
    args.append("--data.class_path=pytorch_lightning.demos.boring_classes.BoringDataModule")
    with pytest.raises(ValueError, match="--data: BoringDataModule has no num_classes"):
        plot_confusion.main(args)
    assert not (tmp_path / "cm.png").exists()


def test_confusion_matrix_counts_every_validation_cloud(ckpts):
    model = plot_confusion.load_classifier(ckpts["classification"], 5, vote_num=1, device=torch.device("cpu"))
    data = SyntheticShapesDataModule(
        num_points=128, samples_per_class=1, val_samples_per_class=2, shapes=SHAPES, batch_size=4
    )
    data.setup("fit")
    counts = plot_confusion.confusion_matrix(model, data.val_dataloader(), torch.device("cpu"))
    assert counts.shape == (5, 5) and int(counts.sum()) == 10
    assert counts.sum(dim=1).tolist() == [2] * 5  # rows are the true classes
    figure = confusion_figure(counts, SHAPES, "test", normalize="true")
    assert "accuracy" in figure.axes[0].get_title()


def test_plot_confusion_reads_the_data_module_of_a_published_config(ckpts, tmp_path):
    data_dir = write_modelnet40(tmp_path, n_train=4, n_test=6, num_points=128)
    args = [
        "--ckpt",
        str(ckpts["modelnet40"]),
        "--config",
        str(ROOT / "configs/Point-JEPA/classification/modelnet40.yaml"),
    ]
    args += [
        f"--data.init_args.data_dir={data_dir}",
        "--batch_size=3",
        "--normalize=true",
        "--output",
        str(tmp_path / "cm40.png"),
    ]
    assert_png(plot_confusion.main(args), min_side=400)  # 40 classes: a larger figure


def test_embedding_cluster_vis_writes_a_tsne_png(ckpts, tmp_path):
    args = ["--ckpt", str(ckpts["pretraining"]), *SYNTHETIC, "--num_points=64", "--max_samples=8", "--split=train"]
    assert_png(embedding_cluster_vis.main([*args, "--output", str(tmp_path / "deep/tsne.png")]))


def test_target_context_vis_writes_a_png(ckpts, tmp_path):
    args = [
        "--ckpt",
        str(ckpts["pretraining"]),
        *SYNTHETIC,
        "--index=3",
        "--seed=1",
        "--output",
        str(tmp_path / "tc.png"),
    ]
    assert_png(target_context_vis.main(args))


def test_chosen_blocks_follow_the_samplers(ckpts):
    model = target_context_vis.model_from_checkpoint(str(ckpts["pretraining"]))
    blocks = choose_blocks(model, torch.rand(200, 3), torch.Generator().manual_seed(0))
    assert blocks.points.shape == (96, 3) and blocks.centers.shape == (16, 3) and blocks.groups.shape == (16, 8)
    assert blocks.targets.shape[0] == 3 and not set(blocks.context) & set(blocks.targets.ravel())
    np.testing.assert_array_equal(np.sort(blocks.centers, axis=0), np.sort(blocks.points[blocks.groups[:, 0]], axis=0))
    in_target = np.isin(np.arange(96), blocks.groups[blocks.targets.ravel()])
    assert (blocks.roles[in_target] >= 0).all()  # target colours win where groups overlap
    only_context = np.isin(np.arange(96), blocks.groups[blocks.context]) & ~in_target
    assert (blocks.roles[only_context] == CONTEXT).all() and (blocks.roles[~in_target & ~only_context] == REST).all()
    again = choose_blocks(model, torch.as_tensor(blocks.points), torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(again.targets, blocks.targets)  # a fixed seed gives the same blocks


def test_target_context_vis_refuses_a_classification_checkpoint(ckpts, tmp_path):
    with pytest.raises(CheckpointError, match="not a Point-JEPA pretraining checkpoint"):
        target_context_vis.main(
            ["--ckpt", str(ckpts["classification"]), *SYNTHETIC, "--output", str(tmp_path / "x.png")]
        )


@pytest.mark.parametrize("module", [plot_confusion, embedding_cluster_vis, target_context_vis])
def test_commands_explain_themselves_and_need_a_data_module(module, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_help:
        module.main(["--help"])
    assert exit_help.value.code == 0 and "--ckpt" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_error:
        module.main(["--ckpt", str(tmp_path / "x.ckpt")])
    assert exit_error.value.code != 0 and "--config" in capsys.readouterr().err


# ---- callbacks ---------------------------------------------------------------------------------------------
def fit(model: pl.LightningModule, logger, callbacks: list, tmp_path: Path, epochs: int = 2) -> pl.Trainer:
    trainer = quiet_trainer(
        max_epochs=epochs,
        limit_train_batches=1,
        limit_val_batches=2,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        num_sanity_val_steps=1,
        default_root_dir=tmp_path,
    )
    data = SyntheticShapesDataModule(
        num_points=128, samples_per_class=2, val_samples_per_class=2, shapes=SHAPES, batch_size=4
    )
    trainer.fit(model, data)
    return trainer


def assert_rgb(image: np.ndarray) -> None:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 and min(image.shape[:2]) >= 200


def test_classification_callbacks_log_confusion_matrix_and_tsne_every_n_epochs(tmp_path, image_logger):
    callbacks = [
        ConfusionMatrixImageLogger(every_n_epochs=1, normalize="true"),
        EmbeddingTSNEImageLogger(every_n_epochs=2),
    ]
    fit(classifier(), image_logger, callbacks, tmp_path, epochs=3)
    assert len(image_logger.images["images/val_confusion_matrix"]) == 3  # every epoch, not in the sanity check
    assert len(image_logger.images["images/val_tsne"]) == 2  # epoch 2 and the last one
    for images in image_logger.images.values():
        assert_rgb(images[0])


def test_pretraining_callbacks_log_target_context_and_student_tsne(tmp_path, image_logger):
    callbacks = [TargetContextImageLogger(every_n_epochs=1), EmbeddingTSNEImageLogger(every_n_epochs=1)]
    fit(pretraining(), image_logger, callbacks, tmp_path, epochs=1)
    assert set(image_logger.images) == {"images/target_context", "images/val_tsne"}
    assert_rgb(image_logger.images["images/target_context"][0])


def test_image_callbacks_skip_loggers_without_images(tmp_path):
    confusion = ConfusionMatrixImageLogger()
    fit(
        classifier(),
        CSVLogger(tmp_path),
        [confusion, EmbeddingTSNEImageLogger(every_n_epochs=1)],
        tmp_path,
        epochs=1,
    )
    assert confusion._metric is None  # nothing was even computed
    assert (tmp_path / "lightning_logs/version_0/metrics.csv").is_file()


def test_target_context_callback_needs_a_pretraining_model(tmp_path, image_logger):
    with pytest.raises(ValueError, match="Point-JEPA pretraining model"):
        fit(classifier(), image_logger, [TargetContextImageLogger()], tmp_path, epochs=1)


def test_tensorboard_logger_gets_the_images(tmp_path):
    pytest.importorskip("tensorboard")
    from pytorch_lightning.loggers import TensorBoardLogger

    fit(classifier(), TensorBoardLogger(tmp_path), [ConfusionMatrixImageLogger()], tmp_path, epochs=1)
    assert list(tmp_path.rglob("events.out.tfevents.*"))


# ---- README figures ----------------------------------------------------------------------------------------
def test_draw_architecture_writes_both_small_figures(tmp_path):
    import runpy

    draw = runpy.run_path(str(ROOT / "misc/draw_architecture.py"))
    draw["main"](["--config", str(ROOT / "configs/demo/pretraining.yaml"), "--out_dir", str(tmp_path)])
    for name in ("architecture.png", "target_context.png"):
        assert_png(tmp_path / name)
        assert (tmp_path / name).stat().st_size < 300_000
    for name in ("architecture.png", "target_context.png"):  # the committed ones too
        assert (ROOT / "misc" / name).stat().st_size < 300_000

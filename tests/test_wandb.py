"""Weights & Biases: the original project's logger configs, offline runs with config, metrics, learning
rate, images and checkpoint artifacts, grouping by task and config name, and no-ops without W&B."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from pointjepa.callbacks.wandb_checkpoint_logger import WandbModelCheckpointLogger, artifact_name
from pointjepa.cli import PointJepaCLI
from pointjepa.eval import aggregate
from pointjepa.models.classification import PointJepaClassification
from pointjepa.models.point_jepa import PointJepa
from pointjepa.tasks.part_segmentation import PartSegmentationCLI
from tests.conftest import CLASSIFIER_ARGS, quiet_trainer, tiny_classifier, tiny_shapes
from tests.fakedata import write_fewshot, write_modelnet40, write_scanobjectnn, write_shapenet55, write_shapenetpart

wandb = pytest.importorskip("wandb")
from tests import wandb_log  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs/Point-JEPA"
ORIGINAL_PROJECTS = {
    "pretraining_shapenet.yaml": "Point-JEPA-Pretraining-ShapeNet",
    "classification_modelnet40.yaml": "Point-JEPA-Classification-ModelNet40",
    "classification_modelnet_fewshot.yaml": "Point-JEPA-Classification-ModelNet-Fewshot",
    "classification_scanobjectnn.yaml": "Point-JEPA-Classification-ScanObjectNN",
    "classification_scanobjectnn_obj_bg.yaml": "Point-JEPA-Classification-ScanObjectNN-OBJ-BG-to-get-the-weight",
    "classification_scanobjectnn_obj_only.yaml": "Point-JEPA-Classification-ScanObjectNN-OBJ-ONLY",
    "part_segmentation_shapenet_part.yaml": "Point-JEPA-Part-Segmentation-ShapeNetPart",
}
TASK_CONFIGS = {  # wandb config -> task config, W&B group, generated data
    "pretraining_shapenet.yaml": ("pretraining/shapenet.yaml", "pretraining", lambda root: write_shapenet55(root)),
    "classification_modelnet40.yaml": (
        "classification/modelnet40.yaml",
        "classification",
        lambda root: write_modelnet40(root),
    ),
    "classification_modelnet_fewshot.yaml": (
        "classification/modelnet_fewshot.yaml",
        "classification",
        lambda root: write_fewshot(root, way=10, shot=10),
    ),
    "classification_scanobjectnn.yaml": (
        "classification/scanobjectnn.yaml",
        "classification",
        lambda root: write_scanobjectnn(root),
    ),
    "classification_scanobjectnn_obj_bg.yaml": (
        "classification/scanobjectnn.yaml",
        "classification",
        lambda root: write_scanobjectnn(root, perturbed=False),
    ),
    "classification_scanobjectnn_obj_only.yaml": (
        "classification/scanobjectnn.yaml",
        "classification",
        lambda root: write_scanobjectnn(root, "main_split_nobg", False),
    ),
    "part_segmentation_shapenet_part.yaml": (
        "segmentation/shapenetpart.yaml",
        "part_segmentation",
        lambda root: write_shapenetpart(root, categories=("Airplane",)),
    ),
}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))


def test_wandb_configs_are_the_original_set_with_its_logger_keys():
    assert {p.name for p in (CONFIGS / "wandb").glob("*.yaml")} == set(ORIGINAL_PROJECTS)
    for name, project in ORIGINAL_PROJECTS.items():
        config = yaml.safe_load((CONFIGS / "wandb" / name).read_text())
        callbacks = config["trainer"].pop("callbacks", None)
        assert config == {
            "trainer": {
                "logger": [
                    {
                        "class_path": "pytorch_lightning.loggers.WandbLogger",
                        "init_args": {"project": project, "log_model": False},
                    }
                ]
            }
        }
        if name == "classification_scanobjectnn_obj_bg.yaml":  # the only published one with live callbacks
            assert callbacks == [
                {
                    "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                    "init_args": {"monitor": "val_acc", "mode": "max", "filename": "{epoch}-{step}-{val_acc:.4f}"},
                },
                {"class_path": "pointjepa.callbacks.wandb_checkpoint_logger.WandbModelCheckpointLogger"},
            ]
        else:
            assert callbacks is None


@pytest.mark.parametrize("wandb_config", sorted(TASK_CONFIGS))
def test_wandb_config_composes_after_its_task_config(wandb_config, offline, tmp_path):
    task_config, group, write_data = TASK_CONFIGS[wandb_config]
    args = [
        "-c",
        str(CONFIGS / task_config),
        "-c",
        str(CONFIGS / "wandb" / wandb_config),
        f"--trainer.default_root_dir={tmp_path}",
    ]
    args.append(f"--data.init_args.data_dir={write_data(tmp_path / 'data')}")
    if group == "pretraining":
        cli = PointJepaCLI(PointJepa, monitor="val_loss", mode="min", wandb_group="pretraining", args=args, run=False)
    elif group == "classification":
        cli = PointJepaCLI(
            PointJepaClassification,
            monitor="val_acc",
            mode="max",
            link_num_classes=True,
            wandb_group="classification",
            args=args,
            run=False,
        )
    else:
        cli = PartSegmentationCLI(args=args, run=False)
    logger = cli.config.trainer.logger[0].init_args
    assert (logger.project, logger.group, logger.job_type) == (
        ORIGINAL_PROJECTS[wandb_config],
        group,
        Path(task_config).stem,
    )
    assert logger.save_dir == str(tmp_path) and type(cli.trainer.logger).__name__ == "WandbLogger"
    checkpoints = cli.trainer.checkpoint_callbacks
    assert len(checkpoints) == 1  # a config's own ModelCheckpoint replaces the CLI's, never beside it
    own = wandb_config == "classification_scanobjectnn_obj_bg.yaml"
    assert checkpoints[0].save_last is (None if own else True)
    assert any(isinstance(c, WandbModelCheckpointLogger) for c in cli.trainer.callbacks) is own


def offline_log(run_dir: Path) -> Path:
    """The log of the single offline W&B run under ``run_dir``."""
    logs = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    return logs[0]


def test_offline_run_logs_config_metrics_lr_images_and_checkpoints(offline, tmp_path):
    tiny = [
        *CLASSIFIER_ARGS,
        "--data.init_args.num_points=96",
        "--data.init_args.samples_per_class=2",
        "--data.init_args.val_samples_per_class=1",
        "--data.init_args.batch_size=8",
    ]
    callbacks = [
        "--trainer.callbacks+=pointjepa.callbacks.wandb_checkpoint_logger.WandbModelCheckpointLogger",
        "--trainer.callbacks+=pointjepa.callbacks.image_loggers.ConfusionMatrixImageLogger",
    ]
    command = [
        sys.executable,
        "-m",
        "pointjepa.tasks.classification",
        "fit",
        "-c",
        str(ROOT / "configs/demo/classification.yaml"),
        "-c",
        str(CONFIGS / "wandb/classification_modelnet40.yaml"),
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path / 'run'}",
        *tiny,
        *callbacks,
    ]
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"PYTHONPATH": str(ROOT)}  # a run of its own
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb sync" in result.stdout + result.stderr

    records = wandb_log.records(offline_log(tmp_path / "run"))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.run_group, run.job_type) == (
        "Point-JEPA-Classification-ModelNet40",
        "classification",
        "classification",
    )
    config, history = wandb_log.config_and_history(offline_log(tmp_path / "run"))
    assert config["model"]["encoder_dim"] == 32 and config["trainer"]["max_epochs"] == 2  # the resolved CLI config
    assert config["data"]["class_path"] == "pointjepa.datasets.SyntheticShapesDataModule"
    assert config["encoder_dim"] == 32 and config["num_classes"] == 8  # the model's hyper-parameters
    logged = {key for row in history for key in row}
    assert {"val_acc", "val_loss", "train_loss_epoch", "lr-AdamW/pg1", "images/val_confusion_matrix/_type"} <= logged
    assert len(list((tmp_path / "run").glob("wandb/offline-run-*/files/media/images/**/*.png"))) == 2  # one per epoch

    artifacts = {r.artifact.name: r.artifact for r in records if r.WhichOneof("record_type") == "artifact"}
    assert set(artifacts) == {"best_val_acc", "last"} and "best" in artifacts["best_val_acc"].aliases
    best_ckpt = next((tmp_path / "run").rglob("epoch=*.ckpt"))
    score = torch.load(best_ckpt, weights_only=False)["callbacks"]
    best = next(state["best_model_score"] for key, state in score.items() if key.startswith("ModelCheckpoint"))
    assert aggregate.run_value(tmp_path / "run", "val_acc", "best") == (pytest.approx(float(best)), "json")


def tiny_fit(tmp_path: Path, logger) -> WandbModelCheckpointLogger:
    callback = WandbModelCheckpointLogger()
    model, data = tiny_classifier(), tiny_shapes()
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=1,
        logger=logger,
        callbacks=[callback],
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, data)
    return callback


@pytest.mark.parametrize("logger", ["none", "csv"])
def test_checkpoint_artifacts_are_skipped_without_a_wandb_logger(logger, tmp_path):
    callback = tiny_fit(tmp_path, CSVLogger(tmp_path) if logger == "csv" else False)
    assert callback.logged == {} and list(tmp_path.rglob("*.ckpt"))


class StateOnlyCheckpoint(Checkpoint):
    """A checkpoint callback that is not a ``ModelCheckpoint``: it keeps no best or last file."""


def test_checkpoint_artifacts_come_from_model_checkpoints_only(offline, tmp_path):
    callback = WandbModelCheckpointLogger()
    checkpoints = [StateOnlyCheckpoint(), ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)]
    logger = WandbLogger(save_dir=tmp_path, offline=True)
    trainer = quiet_trainer(
        max_epochs=1, limit_train_batches=1, logger=logger, callbacks=[*checkpoints, callback], num_sanity_val_steps=0
    )
    trainer.fit(tiny_classifier(), tiny_shapes())
    assert callback.logged == {"last": str(tmp_path / "ckpt" / "last.ckpt")}


def test_artifact_names_are_valid_for_wandb():
    assert artifact_name("best_val_acc") == "best_val_acc"
    assert artifact_name("best_svm_val_acc/modelnet40 (C=0.01)") == "best_svm_val_acc_modelnet40_C_0.01"


def test_runs_work_with_a_csv_logger_and_image_callbacks(tmp_path):
    data = ["--data.init_args.num_points=96", "--data.init_args.samples_per_class=2", "--data.init_args.batch_size=8"]
    data.append("--data.init_args.val_samples_per_class=1")  # one batch: the CLI reads limit_val_batches=1 as 100 %
    tiny = [
        "--model.num_points=64",
        "--model.tokenizer_num_groups=8",
        "--model.encoder_dim=32",
        "--model.encoder_depth=2",
    ]
    args = [
        "fit",
        "-c",
        str(ROOT / "configs/demo/classification.yaml"),
        *tiny,
        *data,
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.callbacks+=pointjepa.callbacks.image_loggers.ConfusionMatrixImageLogger",
        "--trainer.callbacks+=pointjepa.callbacks.wandb_checkpoint_logger.WandbModelCheckpointLogger",
    ]
    PointJepaCLI(PointJepaClassification, monitor="val_acc", mode="max", link_num_classes=True, args=args)
    (log_dir,) = tmp_path.glob("lightning_logs/version_*")
    assert (log_dir / "config.yaml").is_file()  # the resolved config next to the metrics
    assert aggregate.run_value(tmp_path, "val_acc", "best")[1] == "metrics.csv"
    assert not list(tmp_path.rglob("*.png")) and not (tmp_path / "wandb").exists()

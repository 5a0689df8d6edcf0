"""The pretraining CLI end to end on the synthetic shapes: fit, checkpoints, resume, published config."""

import subprocess
import sys
from pathlib import Path

import torch

from pointjepa.__main__ import main
from tests.conftest import DEMO_PRETRAINING_ARGS

ROOT = Path(__file__).resolve().parents[1]


def fit(tmp_path: Path, *extra: str) -> Path:
    config = str(ROOT / "configs/demo/pretraining.yaml")
    main(["fit", "-c", config, *DEMO_PRETRAINING_ARGS, f"--trainer.default_root_dir={tmp_path}", *extra])
    return tmp_path / "checkpoints"


def test_fit_writes_checkpoint_with_published_names(tmp_path):
    checkpoints = fit(tmp_path, "--trainer.max_epochs=2")
    checkpoint = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    keys = checkpoint["state_dict"].keys()
    for prefix in [
        "student.blocks.1.attn.qkv.weight",
        "teacher.ema_model.norm.weight",
        "teacher.step",
        "predictor.mask_token",
        "tokenizer.embedding.encoder.first_conv.0.weight",
        "positional_encoding.0.weight",
    ]:
        assert prefix in keys
    assert int(checkpoint["state_dict"]["teacher.step"]) == 2 * 2  # 16 clouds / batch 8 = 2 steps per epoch
    assert "svm_validation" not in checkpoint["hyper_parameters"]
    assert any(p.name.startswith("epoch=") for p in checkpoints.iterdir())  # best on val_loss besides last


def test_checkpointing_can_be_turned_off(tmp_path):
    fit(tmp_path, "--trainer.max_epochs=1", "--trainer.enable_checkpointing=false")
    assert not (tmp_path / "checkpoints").exists()


def test_resume_continues_ema_step_and_lr_schedule(tmp_path):
    first = fit(tmp_path / "a", "--trainer.max_epochs=2")
    resumed = fit(tmp_path / "b", "--trainer.max_epochs=3", f"--ckpt_path={first / 'last.ckpt'}")
    straight = fit(tmp_path / "c", "--trainer.max_epochs=3")
    a = torch.load(resumed / "last.ckpt", map_location="cpu", weights_only=False)
    b = torch.load(straight / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(a["state_dict"]["teacher.step"]) == int(b["state_dict"]["teacher.step"]) == 6
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 3
    assert a["optimizer_states"][0]["param_groups"][0]["lr"] == b["optimizer_states"][0]["param_groups"][0]["lr"]


def test_published_config_prints_published_values():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pointjepa",
            "fit",
            "-c",
            "configs/Point-JEPA/pretraining/shapenet.yaml",
            "--print_config",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in [
        "max_epochs: 500",
        "sync_batchnorm: true",
        "encoder_dim: 384",
        "encoder_depth: 12",
        "predictor_embed_dim: 192",
        "ema_tau_min: 0.9995",
        "ema_tau_max: 0.99999",
        "learning_rate: 0.001",
        "token_seq_method: iterative_nearest_min_start",
        "class_path: pointjepa.datasets.ShapeNet55DataModule",
        "svm_validation_C: 0.012",
        "seed_everything: 1",
        "check_val_every_n_epoch: 10",
    ]:
        assert line in out, line

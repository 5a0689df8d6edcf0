"""Bad input, damaged checkpoints and numerical trouble each end in one clear error, leaving nothing half-written."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from pointjepa.callbacks.nan_guard import NonFiniteLossError, NonFiniteLossGuard
from pointjepa.datasets import DataError, ModelNet40Ply2048DataModule, SyntheticShapesDataModule
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint
from tests.conftest import quiet_trainer, tiny_pretraining
from tests.fakedata import write_modelnet40

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pointjepa", *args], cwd=ROOT, capture_output=True, text=True)


def tiny_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return quiet_trainer(default_root_dir=tmp_path, num_sanity_val_steps=0, **kwargs)


def test_truncated_checkpoint_gives_one_line_error(tmp_path):
    damaged = tmp_path / "damaged.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:2000])
    result = run_cli("fit", "-c", "configs/demo/pretraining.yaml", f"--ckpt_path={damaged}")
    assert result.returncode == 1
    assert f"--ckpt_path {damaged}: not a complete PyTorch checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(damaged)


def test_missing_and_empty_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").touch()
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")


def test_unknown_sequencer_name_is_refused_before_training():
    result = run_cli("fit", "-c", "configs/demo/pretraining.yaml", "--model.token_seq_method=hilbert")
    assert result.returncode != 0
    assert "token_seq_method" in result.stderr and "iterative_nearest" in result.stderr


def test_contradictory_target_options_are_refused_before_training():
    result = run_cli("fit", "-c", "configs/demo/pretraining.yaml", "--model.num_targets_per_sample=9")
    assert result.returncode == 1 and "leave no context" in result.stderr and "Traceback" not in result.stderr


def test_nan_loss_stops_the_run_naming_the_step(tmp_path):
    data = SyntheticShapesDataModule(num_points=128, samples_per_class=2, batch_size=8)
    data.setup()
    points, labels = data.train_dataset.tensors
    points[3, 5] = float("nan")  # poison one cloud after the file checks, as a corrupted batch would
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[NonFiniteLossGuard(), checkpoint])
    with pytest.raises(NonFiniteLossError, match=r"NaN/Inf at step \d+"):
        trainer.fit(tiny_pretraining(), datamodule=data)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_nan_in_a_data_file_names_the_file(tmp_path):
    root = write_modelnet40(tmp_path, n_train=4, n_test=2, num_points=64, files_per_split=1)
    train_file = next(Path(root).glob("ply_data_train*.h5"))
    with h5py.File(train_file, "r+") as f:
        data = f["data"][:]
        data[2, 7, 1] = np.inf
        f["data"][...] = data
    module = ModelNet40Ply2048DataModule(str(root), batch_size=2)
    with pytest.raises(DataError, match=rf"{train_file.name}.*cloud 2.*NaN or Inf"):
        module.setup("fit")


def test_too_few_points_for_the_tokenizer_is_named():
    model = tiny_pretraining(transformation_subsample_points=6, train_transformations=["subsample"])
    with pytest.raises(ValueError, match="6 points, fewer than tokenizer_num_groups=8"):
        model.training_step((torch.randn(2, 6, 3), torch.zeros(2, dtype=torch.long)), 0)


def test_bf16_mixed_precision_training_gives_finite_losses(tmp_path):
    data = SyntheticShapesDataModule(num_points=128, samples_per_class=2, batch_size=8)
    trainer = tiny_trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, precision="bf16-mixed", callbacks=[NonFiniteLossGuard()]
    )
    trainer.fit(tiny_pretraining(), datamodule=data)
    assert torch.isfinite(trainer.callback_metrics["train_loss_step"])


def test_a_one_sample_last_batch_is_dropped_for_batch_norm():
    shapes = ["sphere", "cube", "cone"]
    data = SyntheticShapesDataModule(samples_per_class=3, shapes=shapes, batch_size=4, drop_last=False)
    data.setup()
    sizes = [len(batch[1]) for batch in data.train_dataloader()]
    assert sizes == [4, 4]  # 9 samples: the lone ninth is dropped
    assert sum(len(batch[1]) for batch in data.val_dataloader()) == 3 * 16

"""Pretraining semantics of the original Point-JEPA: EMA start, z-order, teacher step layout,
teacher after pretrained weights, NaN batch-norm statistics, published batch size.

Expected values were worked out from the original code (``pointjepa/modules/EMA.py`` with
``update_after_step=0, update_every=1``; ``pointjepa/modules/z_order.py`` under numpy 1.23, which its
requirements pin) and are written here as literals.
"""

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from pointjepa.api import load_encoder
from pointjepa.modules.backbone import build_backbone
from pointjepa.modules.ema import EMA
from pointjepa.modules.sequencer import morton_codes, sequence_order
from pointjepa.utils.checkpoint import reset_nan_batchnorm_stats
from pointjepa.utils.pretrained import load_backbone
from tests.conftest import quiet_trainer, tiny_pretraining
from tests.fakeckpt import TINY as BACKBONE_TINY
from tests.fakeckpt import tiny_backbone_state, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BN_MEAN = "tokenizer.embedding.encoder.first_conv.1.running_mean"
BN_VAR = "tokenizer.embedding.encoder.second_conv.1.running_var"


# ---- EMA start ---------------------------------------------------------------------------------------
def test_ema_first_updates_copy_then_average_as_the_original():
    student = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(student.weight)
    ema = EMA(student, tau_min=0.5, tau_max=0.9, tau_steps=4)
    decays, teacher = [], []
    for value in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]:  # the student after each optimizer step
        with torch.no_grad():
            student.weight.fill_(value)
        decays.append(ema.update(student))
        teacher.append(ema.ema_model.weight.item())
    # The original: update 0 copies (decay logged 0.0), update 1 copies again then averages with
    # 0.5 + 0.4 * 1/4 = 0.6, update k >= 2 averages with 0.5 + 0.4 * k/4 up to tau_max.
    assert decays == pytest.approx([0.0, 0.6, 0.7, 0.8, 0.9, 0.9])
    assert teacher == pytest.approx([1.0, 2.0, 2.6, 3.68, 4.912, 7.6208])
    assert ema.step.tolist() == [6]


def test_ema_decay_with_published_schedule():
    ema = EMA(torch.nn.Linear(1, 1), tau_min=0.9995, tau_max=0.99999, tau_steps=40500.0)  # 81 steps x 500 epochs
    ema.load_state_dict({**ema.state_dict(), "step": torch.tensor([1])})
    assert ema.current_decay() == pytest.approx(0.9995 + 0.00049 / 40500, rel=0, abs=1e-15)
    ema.load_state_dict({**ema.state_dict(), "step": torch.tensor([40500])})
    assert ema.current_decay() == 0.99999


def quick_trainer(**options: Any) -> pl.Trainer:
    """A quiet 2-epoch CPU trainer without validation or checkpoints."""
    return quiet_trainer(max_epochs=2, limit_val_batches=0, enable_checkpointing=False, accelerator="cpu", **options)


def test_ema_updates_once_per_optimizer_step_with_gradient_accumulation():
    model = tiny_pretraining(ema_tau_epochs=2)
    data = DataLoader(TensorDataset(torch.randn(8, 96, 3), torch.zeros(8, dtype=torch.long)), batch_size=2)
    quick_trainer(accumulate_grad_batches=2).fit(model, data)
    assert int(model.teacher.step) == 4  # 4 batches per epoch = 2 optimizer steps, 2 epochs
    assert model.teacher.tau_steps == 4.0  # estimated_stepping_batches counts optimizer steps


def test_fix_estimated_stepping_batches_sets_the_ema_ramp_and_is_checked_when_optimizers_are_built():
    # original: tau_steps = (fix or estimated) * ema_tau_epochs / max_epochs in setup; configure_optimizers
    # asserts estimated == fix (the multi-GPU fix: the value in setup may be wrong, the later one is not)
    model = tiny_pretraining(ema_tau_epochs=1, fix_estimated_stepping_batches=4)
    data = DataLoader(TensorDataset(torch.randn(4, 96, 3), torch.zeros(4, dtype=torch.long)), batch_size=2)
    model.trainer = quick_trainer()  # 2 batches x 2 epochs = 4 steps
    model.setup("fit")
    assert model.teacher.tau_steps == 2.0  # 4 * 1 / 2
    with pytest.raises(ValueError, match="fix_estimated_stepping_batches=3 differs from the trainer's 4"):
        quick_trainer().fit(tiny_pretraining(fix_estimated_stepping_batches=3), data)


# ---- teacher step layout -----------------------------------------------------------------------------
def test_teacher_step_is_saved_with_the_original_shape():
    step = tiny_pretraining().state_dict()["teacher.step"]
    assert step.shape == (1,) and step.dtype == torch.int64


@pytest.mark.parametrize("saved", [torch.tensor(7), torch.tensor([7])], ids=["ours-0d", "original-1d"])
def test_teacher_step_loads_from_old_and_original_checkpoints(saved):
    model = tiny_pretraining()
    model.load_state_dict({**model.state_dict(), "teacher.step": saved})
    assert model.teacher.step.tolist() == [7]
    assert model.teacher.current_decay() == 0.99999  # tau_steps is 0 before fit: tau_max from step 1 on


# ---- pretrained_ckpt_path restarts the teacher -----------------------------------------------------------
def test_pretrained_ckpt_teacher_starts_as_a_copy_of_the_loaded_student(tmp_path):
    source = tiny_pretraining()
    with torch.no_grad():
        for p in source.teacher.parameters():
            p.add_(1.0)  # a teacher that differs from the student
    source.teacher.step.fill_(5)
    path = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)

    model = tiny_pretraining(pretrained_ckpt_path=str(path))
    model.load_pretrained(model.pretrained_ckpt_path)  # what fitting starts with (setup)
    for (name, p), q in zip(source.student.named_parameters(), model.teacher.ema_model.parameters()):
        assert torch.equal(q, p), name
    assert torch.equal(model.student.blocks[0].attn.qkv.weight, source.student.blocks[0].attn.qkv.weight)
    assert model.teacher.step.tolist() == [0]
    assert model.teacher.current_decay() == 0.0


# ---- NaN batch-norm statistics ---------------------------------------------------------------------------
def test_nan_running_statistics_are_reset_with_a_warning_naming_the_layer():
    module = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3))
    module[1].running_mean.copy_(torch.tensor([1.0, float("nan"), 2.0]))
    module[2].running_var.copy_(torch.tensor([float("nan"), 3.0, 3.0]))
    module[2].running_mean.fill_(4.0)
    with pytest.warns(UserWarning) as record:
        reset = reset_nan_batchnorm_stats(module)
    assert [str(w.message) for w in record] == [
        "1.running_mean holds NaN in the loaded weights: reset to 0",
        "2.running_var holds NaN in the loaded weights: reset to 1",
    ]
    assert reset == ["1.running_mean", "2.running_var"]
    assert module[1].running_mean.tolist() == [0.0, 0.0, 0.0]  # the whole tensor, as the original
    assert module[2].running_var.tolist() == [1.0, 1.0, 1.0]
    assert module[2].running_mean.tolist() == [4.0, 4.0, 4.0]


def test_downstream_load_resets_nan_running_statistics(tmp_path):
    state = tiny_backbone_state()
    state[BN_MEAN][3] = float("nan")
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", state)
    parts = build_backbone(**BACKBONE_TINY)
    module = torch.nn.ModuleDict(
        {"tokenizer": parts.tokenizer, "positional_encoding": parts.positional_encoding, "encoder": parts.encoder}
    )
    with pytest.warns(UserWarning, match="first_conv.1.running_mean"):
        load_backbone(module, path)
    assert torch.equal(module.state_dict()[BN_MEAN], torch.zeros_like(state[BN_MEAN]))


def test_load_encoder_resets_nan_running_statistics(tmp_path):
    state = tiny_backbone_state()
    state[BN_MEAN][0] = float("nan")
    path = write_checkpoint(tmp_path / "ours.ckpt", "ours", state)
    with pytest.warns(UserWarning, match="first_conv.1.running_mean"):
        encoder = load_encoder(path)
    assert not any(v.isnan().any() for v in encoder.state_dict().values() if v.is_floating_point())


def test_pretraining_load_resets_nan_running_statistics(tmp_path):
    source = tiny_pretraining()
    source.state_dict()[BN_VAR][0] = float("nan")
    path = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    with pytest.warns(UserWarning, match="second_conv.1.running_var"):
        model = tiny_pretraining(pretrained_ckpt_path=str(path))
        model.load_pretrained(model.pretrained_ckpt_path)  # what fitting starts with (setup)
    assert torch.equal(model.state_dict()[BN_VAR], torch.ones_like(source.state_dict()[BN_VAR]))


# ---- morton order --------------------------------------------------------------------------------------
CLOUDS = torch.tensor(
    [
        [
            [0.0, 0.0, 0.0],
            [0.5, -0.25, 0.125],
            [-0.75, 0.5, 0.25],
            [0.25, 0.75, -0.5],
            [-0.5, -0.5, 0.75],
            [0.625, 0.25, -0.875],
        ],
        [[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0.2, 0.3, 0.1], [0.9, 0.8, 0.7], [0.8, 0.9, 0.95], [0.15, 0.85, 0.5]],
        # wider than 256 units: the original keeps only the low 16 bits of each grid coordinate
        [
            [0.0, 0.0, 0.0],
            [200.0, 10.0, 5.0],
            [300.0, 0.0, 0.0],
            [100.0, 100.0, 100.0],
            [0.0, 250.0, 0.0],
            [50.0, 0.0, 280.0],
        ],
    ]
)


def test_morton_codes_are_the_originals():
    assert morton_codes(CLOUDS).tolist() == [
        [281474857402368, 281474855698432, 281474860810240, 281474679930880, 281474432729088, 281474918580224],
        [281474963671444, 281474965570401, 281474969142474, 281474858915243, 281474857640819, 281474931415081],
        [281474974613504, 241862155698176, 280915555123200, 246832842145792, 201055738527744, 280547127459840],
    ]


def test_morton_order_is_the_originals_for_a_batch():
    assert sequence_order(CLOUDS, "morton").tolist() == [[4, 3, 1, 0, 2, 5], [4, 3, 5, 0, 1, 2], [4, 1, 3, 5, 2, 0]]


# ---- published config ----------------------------------------------------------------------------------
def test_pretraining_config_ships_the_published_batch_size():
    config = yaml.safe_load((ROOT / "configs/Point-JEPA/pretraining/shapenet.yaml").read_text())
    assert config["data"]["init_args"] == {
        "data_dir": "./data/ShapeNet55",
        "batch_size": 512,
        "num_workers": 16,
        "in_memory": True,
    }
    assert config["trainer"] == {"sync_batchnorm": True, "max_epochs": 500, "precision": 16}

"""Resuming a pretraining run stopped mid-epoch gives exactly the uninterrupted run's state."""

from pathlib import Path

import pytest
import torch

from pointjepa.__main__ import main
from tests.conftest import DEMO_PRETRAINING_ARGS, ROOT

RUN = [
    "fit",
    "-c",
    str(ROOT / "configs/demo/pretraining.yaml"),
    *DEMO_PRETRAINING_ARGS,
    "--data.init_args.samples_per_class=4",  # 32 clouds / batch 8 = 4 steps per epoch
    "--trainer.max_epochs=2",
    "--trainer.deterministic=true",
    "--trainer.num_sanity_val_steps=0",
]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.slow
def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path):
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'straight'}"])
    main(
        [
            *RUN,
            f"--trainer.default_root_dir={tmp_path / 'cut'}",
            "--trainer.callbacks+=tests.helpers.StopAtStep",
            "--trainer.callbacks.step=6",
        ]
    )
    interrupted = tmp_path / "cut" / "interrupted.ckpt"
    assert int(load(interrupted)["state_dict"]["teacher.step"]) == 6
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'resumed'}", f"--ckpt_path={interrupted}"])

    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 8
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    a, b = straight["optimizer_states"][0], resumed["optimizer_states"][0]
    for index, state in a["state"].items():
        assert torch.equal(state["exp_avg"], b["state"][index]["exp_avg"])
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


def test_checkpoint_carries_the_training_loaders_position(tmp_path):
    main(
        [
            *RUN,
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_epochs=1",
            "--trainer.callbacks+=tests.helpers.StopAtStep",
            "--trainer.callbacks.step=2",
        ]
    )
    state = load(tmp_path / "interrupted.ckpt")["callbacks"]["ExactResume"]
    assert state["loaders"] == [{"epoch": 0, "batches": 2}]

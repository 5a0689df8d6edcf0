"""A pretraining run stopped and resumed, once or many times, ends exactly where the run left alone ends: same
weights, optimizer and schedule."""

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
    "--data.init_args.samples_per_class=4",
    "--model.lr_scheduler_linear_warmup_epochs=3",
    "--model.svm_validation={}",
    "--trainer.max_epochs=3",
    "--trainer.deterministic=true",
    "--trainer.num_sanity_val_steps=0",
]
STEPS = 12


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def final_checkpoint(root: Path) -> dict:
    """The newest ``last*.ckpt`` a run wrote under ``root``."""
    return load(max(root.rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime))


def assert_same_training_state(resumed: dict, straight: dict) -> None:
    assert resumed["global_step"] == straight["global_step"] == STEPS
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    a, b = straight["optimizer_states"][0], resumed["optimizer_states"][0]
    for index, state in a["state"].items():
        assert torch.equal(state["exp_avg"], b["state"][index]["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], b["state"][index]["exp_avg_sq"])
    assert straight["lr_schedulers"] == resumed["lr_schedulers"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final checkpoint of ``RUN`` left alone."""
    root = tmp_path_factory.mktemp("straight")
    main([*RUN, f"--trainer.default_root_dir={root}"])
    return final_checkpoint(root)


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path, straight):
    stopper = ["--trainer.callbacks+=tests.helpers.StopAtStep", "--trainer.callbacks.step=6"]
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'cut'}", *stopper])
    interrupted = tmp_path / "cut" / "interrupted.ckpt"
    assert int(load(interrupted)["state_dict"]["teacher.step"]) == 6
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'resumed'}", f"--ckpt_path={interrupted}"])
    assert_same_training_state(final_checkpoint(tmp_path / "resumed"), straight)


def test_chain_of_resumes_matches_uninterrupted_run(tmp_path, straight):
    """End of epoch 0 (the checkpoint of its last step), then mid-epoch 1 from that run, then the end of
    epoch 1 from that one, then to the end: each run resumes from the previous one's checkpoint."""
    checkpoint = None
    for stop in (4, 6, 8):
        root = tmp_path / f"stop{stop}"
        resume = [f"--ckpt_path={checkpoint}"] if checkpoint else []
        stopper = ["--trainer.callbacks+=tests.helpers.StopAtStep", f"--trainer.callbacks.step={stop}"]
        main([*RUN, f"--trainer.default_root_dir={root}", *stopper, *resume])
        checkpoint = root / "interrupted.ckpt"
        assert load(checkpoint)["global_step"] == stop
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'end'}", f"--ckpt_path={checkpoint}"])
    assert_same_training_state(final_checkpoint(tmp_path / "end"), straight)


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

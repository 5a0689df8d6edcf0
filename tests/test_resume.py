"""A pretraining run stopped and resumed, once or many times, by a stop, a SIGTERM or a kill -9 in the middle
of a checkpoint write, ends exactly where the run left alone ends: same weights, optimizer and schedule."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointjepa.__main__ import main
from pointjepa.utils.checkpoint_files import checkpoint_problem
from pointjepa.utils.io import is_temporary
from tests.conftest import DEMO_PRETRAINING_ARGS, ROOT
from tests.helpers import PATIENCE_S, wait_for

#: 32 clouds / batch 8 = 4 steps per epoch, 3 epochs; a 3-epoch warm-up changes the learning rate every epoch.
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


def cli_run(root: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """``RUN`` as a command-line process writing under ``root``, its output in ``<root>.log``."""
    command = [sys.executable, "-m", "pointjepa", *RUN, f"--trainer.default_root_dir={root}", *extra]
    with open(f"{root}.log", "w") as log:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)


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


def test_sigterm_mid_epoch_saves_the_step_and_resumes_exactly(tmp_path, straight, caplog):
    """SIGTERM arrives during step 7 (mid-epoch 1): the step finishes, ``preempted.ckpt`` holds it, the run
    exits with 143, and ``--ckpt_path last`` (newer than the epoch-0 ``last.ckpt``) resumes it exactly."""
    root = tmp_path / "run"
    process = cli_run(root, "--trainer.callbacks+=tests.helpers.WaitForSignal", "--trainer.callbacks.step=6")
    wait_for(root / "waiting", process, Path(f"{root}.log"))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=PATIENCE_S) == 128 + signal.SIGTERM
    preempted = root / "checkpoints" / "preempted.ckpt"
    assert load(preempted)["global_step"] == 7
    assert f"SIGTERM received: saved {preempted} at step 7" in Path(f"{root}.log").read_text()

    with caplog.at_level(logging.INFO):
        main([*RUN, f"--trainer.default_root_dir={root}", "--ckpt_path=last"])
    assert f"Restoring states from the checkpoint path at {preempted}" in caplog.text
    assert_same_training_state(final_checkpoint(root), straight)


def test_sigterm_during_validation_saves_after_it_and_resumes_exactly(tmp_path, straight):
    signal_it = "--trainer.callbacks+=tests.helpers.SignalDuringValidation"
    with pytest.raises(SystemExit) as exit_info:
        main([*RUN, f"--trainer.default_root_dir={tmp_path}", signal_it])
    assert exit_info.value.code == 128 + signal.SIGTERM
    preempted = tmp_path / "checkpoints" / "preempted.ckpt"
    assert load(preempted)["global_step"] == 4
    main([*RUN, f"--trainer.default_root_dir={tmp_path / 'resumed'}", f"--ckpt_path={preempted}"])
    assert_same_training_state(final_checkpoint(tmp_path / "resumed"), straight)


def test_kill_during_a_checkpoint_write_leaves_whole_checkpoints_and_resumes_exactly(tmp_path, straight, caplog):
    """A checkpoint every step (``step=<n>.ckpt`` and ``last.ckpt``); kill -9 half-way through writing
    ``last.ckpt`` at step 6, with ``TMPDIR`` on another file system where the machine has one (/dev/shm)."""
    root = tmp_path / "run"
    every_step = [
        "--checkpoint.monitor=null",
        "--checkpoint.every_n_train_steps=1",
        "--checkpoint.save_top_k=-1",
        "--checkpoint.filename={step}",
    ]
    env = dict(os.environ)
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        env["TMPDIR"] = str(shm)
    marker = tmp_path / "writing"
    plugin = {"class_path": "tests.helpers.PausingCheckpointIO", "init_args": {"marker": str(marker), "pause_at": 12}}
    process = cli_run(root, *every_step, f"--trainer.plugins={json.dumps(plugin)}", env=env)
    wait_for(marker, process, Path(f"{root}.log"))
    process.kill()
    process.wait(timeout=PATIENCE_S)

    directory = root / "checkpoints"
    (partial,) = [p for p in directory.iterdir() if is_temporary(p)]
    assert partial.name.startswith(".last.ckpt.") and partial.suffix != ".ckpt"
    finished = sorted(p.name for p in directory.glob("*.ckpt"))
    assert finished == ["last.ckpt", *(f"step={n}.ckpt" for n in range(1, 7))]
    assert all(checkpoint_problem(p) is None for p in directory.glob("*.ckpt"))
    assert load(directory / "last.ckpt")["global_step"] == 5

    with caplog.at_level(logging.INFO):
        main([*RUN, f"--trainer.default_root_dir={root}", *every_step, "--ckpt_path=last"])
    assert f"Restoring states from the checkpoint path at {directory / 'last.ckpt'}" in caplog.text
    assert not partial.exists()
    assert_same_training_state(final_checkpoint(root), straight)

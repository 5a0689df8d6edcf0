"""Cluster conditions: SLURM's requeue signal, a full disk, damaged checkpoints, remote checkpoint paths and
the SLURM job scripts."""

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning_fabric.plugins import TorchCheckpointIO

from pointjepa.__main__ import main
from pointjepa.cli import PointJepaCLI, run_cli
from pointjepa.models.point_jepa import PointJepa
from pointjepa.utils.checkpoint import CheckpointError, load_checkpoint
from pointjepa.utils.checkpoint_files import checkpoint_problem, newest_readable_checkpoint
from pointjepa.utils.checkpoint_io import AtomicCheckpointIO
from pointjepa.utils.io import WriteError, atomic_write, is_temporary
from tests.conftest import DEMO_PRETRAINING_ARGS, ROOT
from tests.fakedata import write_shapenet55
from tests.helpers import PATIENCE_S, wait_for

#: One epoch of 4 steps without SVM validation.
RUN = [
    "fit",
    "-c",
    str(ROOT / "configs/demo/pretraining.yaml"),
    *DEMO_PRETRAINING_ARGS,
    "--data.init_args.samples_per_class=4",
    "--model.svm_validation={}",
    "--trainer.max_epochs=1",
    "--trainer.num_sanity_val_steps=0",
]


def limit_file_size(size: int) -> None:
    """In a child process: files larger than ``size`` bytes cannot be written (``EFBIG``, as on a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_atomic_write_failure_names_the_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def disk_full(f):
        f.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError, match=re.escape(f"{target}: could not write the file (No space left on device)")):
        atomic_write(target, disk_full)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_disk_full_while_checkpointing_ends_in_one_line_and_keeps_earlier_checkpoints(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(4)}}, directory / "last.ckpt")
    before = (directory / "last.ckpt").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "pointjepa", *RUN, f"--trainer.default_root_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        preexec_fn=lambda: limit_file_size(200_000),  # a tiny model's checkpoint is several MB
    )
    assert result.returncode == 1, result.stderr[-3000:]
    (line,) = error_lines(result.stderr)
    assert f"{directory}/" in line and ".ckpt: could not write the file (File too large)" in line
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["last.ckpt"]
    assert (directory / "last.ckpt").read_bytes() == before


def test_npz_builder_on_a_full_disk_ends_in_one_line_and_keeps_the_old_archive(tmp_path):
    data_dir = write_shapenet55(tmp_path, num_points=256)
    old = data_dir / "shapenet_train.npz"
    old.write_bytes(b"an earlier archive")
    command = [sys.executable, "-m", "pointjepa.datasets.process.shapenet_npz", "--data_dir", str(data_dir)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=PATIENCE_S, preexec_fn=lambda: limit_file_size(4096)
    )
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert f"{old}: could not write the file (File too large)" in line
    assert old.read_bytes() == b"an earlier archive"
    assert not [p for p in data_dir.iterdir() if is_temporary(p)]


def test_checkpoint_check_finds_truncation_and_damage_without_unpickling(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.arange(1000.0)}}, good)
    assert checkpoint_problem(good) is None
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:3000])
    assert "truncated or corrupt" in checkpoint_problem(tmp_path / "cut.ckpt")
    data = bytearray(good.read_bytes())
    start = data.find(torch.arange(1000.0).numpy().tobytes()[:64])
    data[start + 10] ^= 0xFF  # one flipped byte in the tensor data
    (tmp_path / "flipped.ckpt").write_bytes(bytes(data))
    assert "does not match its checksum" in checkpoint_problem(tmp_path / "flipped.ckpt")
    os.utime(good, (0, 0))  # the oldest of the three
    assert newest_readable_checkpoint(tmp_path) == good


def test_unreadable_last_checkpoint_ends_in_one_line_naming_the_newest_readable(tmp_path, capsys):
    older = tmp_path / "checkpoints" / "epoch=0-step=4.ckpt"
    older.parent.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(4)}}, older)
    os.utime(older, (1, 1))
    last = older.parent / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(400)}}, last)
    last.write_bytes(last.read_bytes()[:1000])  # cut short, as a copy killed half-way leaves it
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: main([*RUN, f"--trainer.default_root_dir={tmp_path}", "--ckpt_path=last"]))
    assert exit_info.value.code == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: --ckpt_path {last}: not a complete PyTorch checkpoint (truncated or corrupt?)")
    assert f"the newest readable checkpoint in {older.parent} is {older}" in line


def test_resume_fallback_takes_the_newest_readable_checkpoint_with_a_warning(tmp_path):
    directory = tmp_path / "checkpoints"
    main([*RUN, f"--trainer.default_root_dir={tmp_path}"])
    (good,) = [p for p in directory.glob("epoch=*.ckpt")]
    last = directory / "last.ckpt"
    last.write_bytes(last.read_bytes()[:-100])
    os.utime(good, (1, 1))
    warning = rf"{re.escape(str(last))}: .* resuming from the newest readable checkpoint, {re.escape(str(good))}"
    with pytest.warns(UserWarning, match=warning):
        main([*RUN, f"--trainer.default_root_dir={tmp_path}", "--ckpt_path=last", "--resume_fallback=true"])
    with pytest.raises(CheckpointError, match=re.escape(f"the newest readable checkpoint in {directory} is {good}")):
        main([*RUN, f"--trainer.default_root_dir={tmp_path}", f"--ckpt_path={last}"])


def test_slurm_requeue_signal_saves_requeues_and_exits_non_zero(tmp_path):
    """SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``) under SLURM: save ``preempted.ckpt`` at the end of the step in
    progress, ``scontrol requeue <job id>`` (a stand-in on PATH records the call), exit 128 + 10."""
    bin_dir = tmp_path / "bin"
    fake_command(bin_dir, "scontrol", tmp_path / "scontrol.log")
    slurm = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "pretrain"}
    slurm |= {"SLURM_JOB_ID": "4242", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    env = {**os.environ, **slurm, "SLURM_NODELIST": "127.0.0.1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    root = tmp_path / "run"
    waiter = ["--trainer.callbacks+=tests.helpers.WaitForSignal", "--trainer.callbacks.step=1"]
    command = [sys.executable, "-m", "pointjepa", *RUN, f"--trainer.default_root_dir={root}", *waiter]
    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for(root / "waiting", process, log)
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=PATIENCE_S) == 128 + signal.SIGUSR1, log.read_text()[-3000:]
    output = log.read_text()
    preempted = root / "checkpoints" / "preempted.ckpt"
    assert load_checkpoint(preempted)["global_step"] == 2
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    assert f"SIGUSR1 received: saved {preempted} at step 2" in output and "SLURM job 4242 requeued" in output


def test_remote_checkpoint_paths_keep_working():
    checkpoint = {"state_dict": {"w": torch.arange(5.0)}, "global_step": 3}
    io = AtomicCheckpointIO()
    io.save_checkpoint(checkpoint, "memory://pointjepa-test/checkpoints/last.ckpt")
    loaded = io.load_checkpoint("memory://pointjepa-test/checkpoints/last.ckpt")
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], checkpoint["state_dict"]["w"])


@pytest.mark.parametrize(
    ("plugins", "expected"),
    [([], AtomicCheckpointIO), (["--trainer.plugins=lightning_fabric.plugins.TorchCheckpointIO"], TorchCheckpointIO)],
)
def test_cli_writes_checkpoints_atomically_unless_told_otherwise(tmp_path, plugins, expected):
    args = [*RUN[1:], f"--trainer.default_root_dir={tmp_path}", *plugins]
    cli = PointJepaCLI(PointJepa, monitor="val_loss", mode="min", args=args, run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is expected


def test_job_scripts_are_valid_bash():
    scripts = sorted([*(ROOT / "scripts" / "slurm").glob("*.sh"), *(ROOT / "scripts" / "torchrun").glob("*.sh")])
    assert len(scripts) == 5
    for script in scripts:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def fake_command(bin_dir: Path, name: str, log: Path) -> None:
    """An executable ``name`` on ``bin_dir`` that appends its arguments to ``log``."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (bin_dir / name).chmod(0o755)


def test_multinode_slurm_script_starts_one_resuming_process_per_gpu_with_the_batch_split(tmp_path):
    fake_command(tmp_path / "bin", "srun", tmp_path / "srun.log")
    slurm = {"SLURM_SUBMIT_DIR": str(ROOT), "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "4"}
    slurm |= {"SLURM_JOB_NAME": "pretrain", "SLURM_JOB_ID": "77", "VENV": str(tmp_path / "none")}
    env = {**os.environ, **slurm, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    script = ROOT / "scripts" / "slurm" / "pretrain_shapenet_multinode.sh"
    subprocess.run(["bash", str(script), "--trainer.max_epochs", "5"], env=env, check=True)
    command = (tmp_path / "srun.log").read_text()
    assert command.startswith("python -m pointjepa fit -c configs/Point-JEPA/pretraining/shapenet.yaml")
    for expected in ("--data.init_args.batch_size 64", "--trainer.max_epochs 5", "--trainer.num_nodes 2"):
        assert expected in command
    assert "--trainer.devices 4 --trainer.default_root_dir artifacts/slurm/pretrain-77" in command
    assert command.rstrip().endswith("--checkpoint.dirpath artifacts/slurm/pretrain-77/checkpoints --ckpt_path last")
    result = subprocess.run(["bash", str(script)], env={**env, "SLURM_NTASKS_PER_NODE": "3"}, capture_output=True)
    assert result.returncode == 2 and b"batch 512 does not split over 6 processes" in result.stderr


def test_torchrun_recipe_passes_nodes_ranks_and_the_split_batch(tmp_path):
    fake_command(tmp_path / "bin", "python", tmp_path / "python.log")
    env = {**os.environ, "PYTHON": str(tmp_path / "bin" / "python"), "NNODES": "2", "NODE_RANK": "1", "GPUS": "2"}
    subprocess.run(["bash", str(ROOT / "scripts" / "torchrun" / "pretrain_shapenet.sh")], env=env, check=True)
    command = (tmp_path / "python.log").read_text()
    assert command.startswith("-m torch.distributed.run --nnodes 2 --node_rank 1 --nproc_per_node 2")
    assert "--trainer.num_nodes 2 --trainer.devices 2 --data.init_args.batch_size 128" in command

"""Two-process DDP on CPU (gloo) with synchronised batch norm, compared with a single-process run."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from pointjepa.modules.sync_batchnorm import PortableSyncBatchNorm, ProcessGroupBatchNorm
from pointjepa.utils.checkpoint import load_checkpoint
from tests.conftest import DEMO_PRETRAINING_ARGS
from tests.helpers import PATIENCE_S

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    *(arg for arg in DEMO_PRETRAINING_ARGS if arg.startswith("--model.")),
    "--data.init_args.num_points=128",
    "--data.init_args.samples_per_class=4",
    "--data.init_args.batch_size=8",
    "--trainer.max_epochs=1",
    "--trainer.check_val_every_n_epoch=1",
    "--trainer.sync_batchnorm=true",
    "--trainer.enable_progress_bar=false",
    "--trainer.log_every_n_steps=1",
    "--trainer.logger=pytorch_lightning.loggers.CSVLogger",
]


def logged_metrics(root: Path) -> set[str]:
    (metrics,) = root.rglob("metrics.csv")
    with metrics.open() as f:
        return {name for row in csv.DictReader(f) for name, value in row.items() if value}


def run(root: Path, *extra: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pointjepa",
            "fit",
            "-c",
            "configs/demo/pretraining.yaml",
            *TINY,
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.save_dir={root}",
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_two_cpu_processes_log_what_a_single_process_logs(tmp_path):
    run(tmp_path / "ddp", "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu")
    run(tmp_path / "single", "--trainer.devices=1", "--trainer.accelerator=cpu")
    ddp, single = logged_metrics(tmp_path / "ddp"), logged_metrics(tmp_path / "single")
    assert {"train_loss_step", "val_loss", "svm_val_acc_synthetic", "ema_decay"} <= ddp
    assert ddp == single
    checkpoint = torch.load(next((tmp_path / "ddp").rglob("last.ckpt")), map_location="cpu", weights_only=False)
    assert "tokenizer.embedding.encoder.first_conv.1.running_mean" in checkpoint["state_dict"]  # plain BN names


def _two_rank_batchnorm(rank: int, init_file: str, x: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    layer = PortableSyncBatchNorm().apply(torch.nn.Sequential(torch.nn.BatchNorm1d(4)))[0].train()
    part = x.chunk(2)[rank].clone().requires_grad_(True)
    out = layer(part)
    (out * torch.arange(out.numel()).view_as(out).float()).sum().backward()
    torch.save({"out": out.detach(), "grad": part.grad, "running_var": layer.running_var}, f"{out_dir}/{rank}.pt")
    dist.destroy_process_group()


def test_process_group_batchnorm_over_two_processes_equals_batchnorm_over_the_whole_batch(tmp_path):
    x = torch.randn(8, 4, 5)
    torch.multiprocessing.spawn(_two_rank_batchnorm, args=(str(tmp_path / "pg"), x, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    reference = torch.nn.BatchNorm1d(4).train()
    whole = x.clone().requires_grad_(True)
    out = reference(whole)
    weights = torch.cat([torch.arange(o["out"].numel()).view_as(o["out"]).float() for o in ranks])
    (out * weights).sum().backward()
    assert torch.allclose(torch.cat([r["out"] for r in ranks]), out, atol=1e-5)
    assert torch.allclose(torch.cat([r["grad"] for r in ranks]), whole.grad, atol=1e-4)
    assert torch.allclose(ranks[0]["running_var"], reference.running_var, atol=1e-5)


def test_sync_batchnorm_plugin_reverts_to_the_original_class():
    synced = PortableSyncBatchNorm().apply(torch.nn.Sequential(torch.nn.BatchNorm1d(4)))
    assert isinstance(synced[0], ProcessGroupBatchNorm)
    assert type(PortableSyncBatchNorm().revert(synced)[0]) is torch.nn.BatchNorm1d


#: Two epochs of the tiny model on 2 processes (32 clouds, 8 per batch and process: 2 steps per epoch).
DISTRIBUTED = [
    "-m",
    "pointjepa",
    "fit",
    "-c",
    "configs/demo/pretraining.yaml",
    *(arg for arg in DEMO_PRETRAINING_ARGS if arg.startswith("--model.")),
    "--model.svm_validation={}",
    "--data.init_args.num_points=128",
    "--data.init_args.samples_per_class=4",
    "--data.init_args.batch_size=8",
    "--trainer.max_epochs=2",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.strategy=ddp",
    "--trainer.accelerator=cpu",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(root: Path, nnodes: int, node_rank: int, nproc: int, port: int) -> subprocess.Popen:
    """``torchrun`` of ``DISTRIBUTED`` for one node of a job whose rendezvous is 127.0.0.1:``port``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--node_rank={node_rank}"]
    launcher += [f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={port}"]
    trainer = [f"--trainer.num_nodes={nnodes}", f"--trainer.devices={nproc}", f"--trainer.default_root_dir={root}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(root.parent / f"{root.name}-{node_rank}.log", "w") as log:
        return subprocess.Popen([*launcher, *DISTRIBUTED, *trainer], cwd=ROOT, env=env, stdout=log, stderr=log)


@pytest.mark.slow
def test_torchrun_two_nodes_of_one_process_equal_one_node_of_two(tmp_path):
    port = free_port()
    nodes = [torchrun(tmp_path / "two_nodes", 2, rank, 1, port) for rank in (0, 1)]
    assert [node.wait(timeout=PATIENCE_S) for node in nodes] == [0, 0], (tmp_path / "two_nodes-0.log").read_text()
    one_node = torchrun(tmp_path / "one_node", 1, 0, 2, free_port())
    assert one_node.wait(timeout=PATIENCE_S) == 0, (tmp_path / "one_node-0.log").read_text()[-3000:]
    a, b = (load_checkpoint(next((tmp_path / run).rglob("last.ckpt"))) for run in ("two_nodes", "one_node"))
    assert a["global_step"] == b["global_step"] == 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_a_rank_killed_under_ddp_ends_the_job_without_a_hang(tmp_path, rank):
    """SIGKILL to one of two DDP processes (gloo) mid-training: every process of the job ends (the test's
    timeout catches a hang), with a non-zero exit code."""
    killer = ["--trainer.callbacks+=tests.helpers.KillRankAtStep", f"--trainer.callbacks.rank={rank}"]
    command = [sys.executable, *DISTRIBUTED, "--trainer.devices=2", f"--trainer.default_root_dir={tmp_path}", *killer]
    command.append("--trainer.callbacks.step=1")
    job = subprocess.Popen(command, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = job.communicate(timeout=PATIENCE_S)
        assert job.returncode != 0
        deadline = time.monotonic() + PATIENCE_S
        while process_group_alive(job.pid):
            assert time.monotonic() < deadline, "a process of the job is still running"
            time.sleep(0.1)
    finally:
        if process_group_alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True

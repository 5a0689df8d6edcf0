"""The in-memory ShapeNet55 split batched on the training device: the host loader's batches, resume, DDP shards."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler

from pointjepa.callbacks.resume import ExactResume
from pointjepa.datasets import ShapeNet55DataModule
from pointjepa.datasets.device_loader import DeviceBatchLoader
from pointjepa.datasets.loader import EpochShuffleSampler, ResumableDataLoader
from pointjepa.datasets.placement import choose_serving_device
from tests.conftest import quiet_trainer, tiny_pretraining
from tests.fakedata import write_shapenet55
from tests.helpers import StopAtStep

CPU = torch.device("cpu")
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def datamodule(
    tmp_path, n_train=10, n_test=5, batch_size=4, num_points=8, device=CPU, **kwargs
) -> ShapeNet55DataModule:
    """A set-up in-memory data module on tiny npz data; ``device`` forces the device path (None: host path)."""
    data_dir = write_shapenet55(tmp_path, n_train=n_train, n_test=n_test, num_points=num_points, npz=True)
    dm = ShapeNet55DataModule(str(data_dir), batch_size=batch_size, in_memory=True, pin_memory=False, **kwargs)
    if device is not None:
        dm.serving_device = lambda: device  # batched on ``device`` whatever the trainer
    dm.setup()
    return dm


def indexed_loader(n: int, batch_size: int, **kwargs) -> DeviceBatchLoader:
    """A loader over clouds whose coordinates and label are their index, with a seeded shuffle."""
    points = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 2, 3)
    return DeviceBatchLoader(points, torch.arange(n), CPU, batch_size, EpochShuffleSampler(n, seed=3), **kwargs)


def epoch(loader, index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if loader.sampler is not None:
        loader.sampler.set_epoch(index)
    return list(loader)


def assert_same_batches(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (points_a, labels_a), (points_b, labels_b) in zip(a, b):
        assert torch.equal(points_a, points_b) and torch.equal(labels_a, labels_b)


@pytest.mark.parametrize(
    "n_train, batch_size, drop_last",
    [(10, 4, True), (10, 4, False), (9, 4, False), (13, 5, False), (3, 4, True), (8, 4, False)],
)
def test_device_path_yields_the_host_loaders_batches(tmp_path, n_train, batch_size, drop_last):
    host = datamodule(tmp_path / "host", n_train, batch_size=batch_size, device=None, drop_last=drop_last)
    device = datamodule(tmp_path / "device", n_train, batch_size=batch_size, drop_last=drop_last)
    torch.manual_seed(5)  # the samplers' default seed
    host_train, device_train = host.train_dataloader(), device.train_dataloader()
    assert isinstance(host_train, ResumableDataLoader) and isinstance(device_train, DeviceBatchLoader)
    assert len(device_train) == len(host_train)
    for index in range(3):
        assert_same_batches(epoch(device_train, index), epoch(host_train, index))
    assert_same_batches(list(device.val_dataloader()), list(host.val_dataloader()))


def test_one_sample_last_batch_is_dropped_and_val_keeps_its_partial_batch(tmp_path):
    dm = datamodule(tmp_path, n_train=9, n_test=5, batch_size=4, drop_last=False)
    assert [len(labels) for _, labels in dm.train_dataloader()] == [4, 4]
    val = list(dm.val_dataloader())
    assert [len(labels) for _, labels in val] == [4, 1]
    assert torch.equal(torch.cat([labels for _, labels in val]), torch.as_tensor(dm.val_dataset.labels))


def test_set_epoch_changes_the_order():
    loader = indexed_loader(12, 4)
    first, second, again = (torch.cat([labels for _, labels in epoch(loader, i)]) for i in (0, 1, 0))
    assert not torch.equal(first, second)
    assert torch.equal(first, again)
    assert sorted(second.tolist()) == list(range(12))


def test_load_state_dict_resumes_mid_epoch_at_the_next_batch():
    loader = indexed_loader(14, 4, drop_last=True)
    full = epoch(loader, 1)
    loader.sampler.set_epoch(1)
    iterator = iter(loader)
    next(iterator), next(iterator)
    state = loader.state_dict()
    assert state == {"epoch": 1, "batches": 2}

    resumed = indexed_loader(14, 4, drop_last=True)
    resumed.load_state_dict(state)
    assert_same_batches(epoch(resumed, 1), full[2:])
    assert resumed.state_dict() == {"epoch": 1, "batches": 3}
    assert_same_batches(epoch(resumed, 1), full)  # the saved position applies once


def test_saved_position_of_another_epoch_is_ignored():
    loader = indexed_loader(8, 4)
    loader.load_state_dict({"epoch": 0, "batches": 1})
    assert len(epoch(loader, 1)) == 2


@pytest.mark.parametrize("n", [10, 11])
def test_ddp_shards_are_equal_disjoint_and_cover_the_permutation(n):
    permutation = torch.tensor(list(EpochShuffleSampler(n, seed=3)))
    shards = []
    for rank in range(2):
        loader = indexed_loader(n, 2, rank=rank, world_size=2)
        shards.append(torch.cat([labels for _, labels in epoch(loader, 0)]))
        expected = permutation[list(DistributedSampler(range(n), num_replicas=2, rank=rank, shuffle=False))]
        assert torch.equal(shards[-1], expected)
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)
    assert set(torch.cat(shards).tolist()) == set(range(n))
    if n % 2 == 0:
        assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_data_module_shards_by_the_trainers_rank(tmp_path):
    dm = datamodule(tmp_path, n_train=10, batch_size=4, drop_last=False)
    loaders = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        loaders.append(dm.train_dataloader())
    assert len(loaders[0]) == len(loaders[1]) == 1  # 5 samples per rank: the one-sample batch is dropped
    assert [(dl.rank, dl.world_size) for dl in loaders] == [(0, 2), (1, 2)]


class RecordLabels(pl.Callback):
    def __init__(self) -> None:
        self.labels: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.labels.append(batch[1].tolist())


def fit(tmp_path, dm, *callbacks, ckpt_path=None, **kwargs) -> pl.Trainer:
    pl.seed_everything(0)
    trainer = quiet_trainer(
        accelerator="cpu",
        max_epochs=1,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        **kwargs,
    )
    trainer.fit(tiny_pretraining(), datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_fit_trains_from_the_device_loader(tmp_path):
    dm = datamodule(tmp_path, n_train=12, n_test=4, batch_size=4, num_points=128)
    trainer = fit(tmp_path, dm)
    assert isinstance(trainer.train_dataloader, DeviceBatchLoader)
    assert trainer.global_step == 3
    assert trainer.fit_loop.on_save_checkpoint()["combined_loader"] == [{"epoch": 0, "batches": 3}]
    assert "val_loss" in trainer.callback_metrics


def test_fit_resumed_mid_epoch_trains_the_remaining_batches(tmp_path):
    dm = datamodule(tmp_path, n_train=12, n_test=4, batch_size=4, num_points=128)
    straight, cut, resumed = RecordLabels(), RecordLabels(), RecordLabels()
    fit(tmp_path / "straight", dm, straight, limit_val_batches=0)
    fit(tmp_path, dm, cut, ExactResume(), StopAtStep(1), limit_val_batches=0)
    fit(tmp_path, dm, resumed, ExactResume(), ckpt_path=tmp_path / "interrupted.ckpt", limit_val_batches=0)
    assert cut.labels + resumed.labels == straight.labels
    assert len(straight.labels) == 3


def test_auto_on_a_cpu_trainer_keeps_the_host_loader(tmp_path):
    dm = datamodule(tmp_path, device=None)
    dm.trainer = pl.Trainer(accelerator="cpu", logger=False)
    assert isinstance(dm.train_dataloader(), ResumableDataLoader)


def test_cuda_on_a_cpu_trainer_raises_naming_the_option(tmp_path):
    dm = datamodule(tmp_path, device=None, in_memory_device="cuda")
    dm.trainer = pl.Trainer(accelerator="cpu", logger=False)
    with pytest.raises(ValueError, match="in_memory_device: 'cuda'.*root device is cpu"):
        dm.train_dataloader()


def test_bad_in_memory_device_options_raise():
    with pytest.raises(ValueError, match="in_memory_device: expected one of 'auto', 'cpu', 'cuda'"):
        ShapeNet55DataModule(in_memory=True, in_memory_device="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="in_memory_device: 'cuda'.*in_memory=True"):
        ShapeNet55DataModule(in_memory_device="cuda")


@pytest.mark.parametrize("free_mib, fits", [(3, True), (2, False)])
def test_auto_takes_the_gpu_when_twice_the_arrays_are_free_on_every_rank(monkeypatch, free_mib, fits):
    root, votes = torch.device("cuda", 0), []
    strategy = SimpleNamespace(root_device=root, reduce_boolean_decision=lambda ok, all: votes.append(all) or ok)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free_mib * 2**20, 8 * 2**30))
    device = choose_serving_device("auto", 2**20, SimpleNamespace(strategy=strategy), "ShapeNet55DataModule")
    assert device == (root if fits else None)
    assert votes == [True]  # every rank must agree


@requires_cuda
def test_cuda_arrays_are_uploaded_once_and_batches_come_out_on_the_gpu(tmp_path):
    dm = datamodule(tmp_path, n_train=40, batch_size=4, device=None, in_memory_device="cuda")
    dm.trainer = pl.Trainer(accelerator="cuda", devices=1, logger=False)
    torch.manual_seed(5)
    loader = dm.train_dataloader()
    assert loader.points.is_cuda and loader.labels.is_cuda
    assert dm.train_dataloader().points.data_ptr() == loader.points.data_ptr()  # no second upload
    iterator = iter(loader)
    first = next(iterator)  # moves the epoch's order to the GPU
    torch.cuda.set_sync_debug_mode("error")
    try:
        rest = list(iterator)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert all(points.is_cuda and labels.is_cuda for points, labels in [first, *rest])
    host = datamodule(tmp_path / "host", n_train=40, batch_size=4, device=None, in_memory_device="cpu")
    torch.manual_seed(5)
    expected = list(host.train_dataloader())
    assert_same_batches([(points.cpu(), labels.cpu()) for points, labels in [first, *rest]], expected)


@requires_cuda
def test_auto_batches_small_arrays_on_the_gpu(tmp_path):
    dm = datamodule(tmp_path, device=None)
    dm.trainer = pl.Trainer(accelerator="cuda", devices=1, logger=False)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceBatchLoader) and loader.points.is_cuda

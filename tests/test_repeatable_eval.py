"""The evaluation commands give the same output for the same command line, in any process: their clouds come
in the split's stored order and every random draw from their seed (issue: the same SVM probe command gave
72.92 % and then 75.52 %)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from pointjepa.api import load_encoder
from pointjepa.datasets import SyntheticShapesDataModule
from pointjepa.datasets.base import PointCloudDataModule
from pointjepa.datasets.device_loader import DeviceBatchLoader
from pointjepa.datasets.loader import EpochShuffleSampler
from pointjepa.eval import svm
from pointjepa.eval._cli_common import ordered_loader
from tests.conftest import SHAPES, save_checkpoint, tiny_classifier, tiny_pretraining
from tests.fakedata import write_shapenetpart

ROOT = Path(__file__).resolve().parents[1]
GROUPS = dict(tokenizer_num_groups=16, tokenizer_group_size=8)
SYNTHETIC = {
    "class_path": "pointjepa.datasets.SyntheticShapesDataModule",
    "init_args": {"num_points": 128, "samples_per_class": 6, "val_samples_per_class": 4, "shapes": SHAPES},
}
#: Runs ``python -m <module> <args>`` for each (module, args) of argv[1] (JSON) in this one fresh process,
#: exactly as the command line does (``__main__``, ``run_cli``, ``sys.argv``). Before each command the
#: global random streams get fresh, unpredictable seeds, as in a new interpreter, so no command leans on
#: the state another left behind.
DRIVER = """
import json, random, runpy, sys
import numpy, torch
for module, args in json.loads(sys.argv[1]):
    torch.seed(), numpy.random.seed(None), random.seed(None)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("repeatable")
    torch.manual_seed(0)
    config = {
        "svm_validation_C": 1.0,
        "svm_validation": {"shapes": {**SYNTHETIC, "init_args": {**SYNTHETIC["init_args"], "batch_size": 4}}},
    }
    (root / "probe.yaml").write_text(yaml.safe_dump({"model": config}))
    config["svm_validation"]["shapes"]["init_args"]["batch_size"] = 7
    (root / "probe_batches_of_7.yaml").write_text(yaml.safe_dump({"model": config}))
    (root / "data.yaml").write_text(
        yaml.safe_dump({"data": {**SYNTHETIC, "init_args": {**SYNTHETIC["init_args"], "batch_size": 3}}})
    )
    part_data = write_shapenetpart(root, categories=("Airplane", "Mug"), n_train=3, n_test=3, num_points=150)
    parts = {"class_path": "pointjepa.datasets.ShapeNetPartDataModule"}
    parts["init_args"] = {"data_dir": str(part_data), "num_points": 128, "batch_size": 2, "num_workers": 2}
    (root / "parts.yaml").write_text(yaml.safe_dump({"data": parts}))
    return {
        "root": root,
        "pretraining": save_checkpoint(
            tiny_pretraining(**GROUPS, transformation_subsample_points=64), root / "pre.ckpt"
        ),
        "classification": save_checkpoint(tiny_classifier(**GROUPS), root / "cls.ckpt"),
    }


def commands(files: dict[str, Path], out: Path) -> list[tuple[str, list[str]]]:
    """Every evaluation command on the tiny checkpoints, each writing its output under ``out``."""
    root, pre, cls = files["root"], str(files["pretraining"]), str(files["classification"])
    data, parts = ["--config", str(root / "data.yaml")], ["--config", str(root / "parts.yaml")]
    return [
        (
            "pointjepa.eval.svm",
            ["--ckpt", pre, "--config", str(root / "probe.yaml"), "--seeds", "0", "1", "--json", str(out / "svm.json")],
        ),
        (
            "pointjepa.eval.voting",
            ["--ckpt", cls, *data, "--vote_num=2", "--vote_iterations=2", "--json", str(out / "voting.json")],
        ),
        (
            "pointjepa.eval.plot_confusion",
            ["--ckpt", cls, *data, "--split=train", "--output", str(out / "confusion.png")],
        ),
        (
            "pointjepa.eval.embedding_cluster_vis",
            ["--ckpt", pre, *parts, "--split=train", "--max_samples=5", "--output", str(out / "tsne.png")],
        ),
        (
            "pointjepa.eval.target_context_vis",
            ["--ckpt", pre, *parts, "--index=2", "--output", str(out / "target_context.png")],
        ),
    ]


def run_fresh(files: dict[str, Path], out: Path) -> dict[str, bytes]:
    """Every command, in one fresh interpreter -> output file name -> its bytes."""
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
    argv = json.dumps(commands(files, out))
    result = subprocess.run([sys.executable, "-c", DRIVER, argv], cwd=out, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_every_eval_command_gives_the_same_output_in_two_fresh_processes(files, tmp_path):
    first, second = run_fresh(files, tmp_path / "first"), run_fresh(files, tmp_path / "second")
    assert set(first) == {"svm.json", "voting.json", "confusion.png", "tsne.png", "target_context.png"}
    assert [name for name in first if first[name] != second[name]] == []


def probe(files: dict[str, Path], config: str, *extra: str) -> list[float]:
    args = ["--ckpt", str(files["pretraining"]), "--config", str(files["root"] / config), "--device", "cpu"]
    return svm.main([*args, *extra])["results"]["shapes"][0]["test_acc_runs"]


def test_probe_numbers_depend_on_the_seeds_alone(files):
    torch.manual_seed(123)  # the process state a fresh interpreter starts with differs run to run
    reference = probe(files, "probe.yaml", "--seeds", "0", "1")
    torch.manual_seed(456)
    assert probe(files, "probe.yaml", "--seeds", "0", "1", "--num_points", "64", "--C", "1.0") == reference  # defaults
    assert probe(files, "probe_batches_of_7.yaml", "--seeds", "0", "1") == reference  # other batches
    assert probe(files, "probe.yaml", "--seeds", "1") == reference[1:]  # a seed's number does not depend on the others


def test_seeded_encoder_draws_one_start_per_cloud_whatever_the_batches(files):
    encoder = load_encoder(files["pretraining"], num_points=32)
    clouds = torch.rand(9, 100, 3)
    whole = encoder.seeded(5)(clouds)
    embed = encoder.seeded(5)
    in_batches = torch.cat([embed(clouds[:2]), embed(clouds[2:7]), embed(clouds[7:])])
    torch.testing.assert_close(in_batches, whole)
    assert not torch.allclose(encoder.seeded(6)(clouds), whole)


def loader_labels(loader) -> list[int]:
    return torch.cat([batch[1] for batch in loader]).tolist()


def test_ordered_loader_serves_the_training_split_in_stored_order(tmp_path):
    data = SyntheticShapesDataModule(num_points=32, samples_per_class=3, shapes=SHAPES, batch_size=4, drop_last=True)
    data.setup("fit")
    stored = data.train_dataset.tensors[1].tolist()
    torch.manual_seed(1)
    assert loader_labels(data.train_dataloader()) != stored  # the training loader shuffles and drops
    loader = ordered_loader(data, "train", seed=0)
    assert isinstance(loader, DataLoader) and loader.batch_size == 4
    assert loader_labels(loader) == stored  # every cloud, once, in order (15 = 3 full batches + 3)


class DeviceData(PointCloudDataModule):
    """A data module whose training loader is a shuffling ``DeviceBatchLoader`` (as ShapeNet55 in memory)."""

    def setup(self, stage: str | None = None) -> None:
        self.points, self.labels = torch.rand(10, 8, 3), torch.arange(10)

    def train_dataloader(self) -> DeviceBatchLoader:
        sampler = EpochShuffleSampler(10, seed=3)
        return DeviceBatchLoader(self.points, self.labels, torch.device("cpu"), 4, sampler, drop_last=True)


def test_ordered_loader_keeps_a_device_loader_on_its_device_in_order():
    loader = ordered_loader(DeviceData(), "train", seed=0)
    assert isinstance(loader, DeviceBatchLoader) and loader.sampler is None
    assert loader_labels(loader) == list(range(10))

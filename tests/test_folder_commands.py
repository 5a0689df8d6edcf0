"""A folder of your own meshes and point files through the commands: pretraining with SVM validation, the SVM
probe, classification fine-tuning (classes linked from the folders), and ``eval.embed`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pointjepa
from pointjepa.__main__ import main as pretrain
from pointjepa.datasets import DataError, PointCloudFolderDataModule
from pointjepa.eval import embed, svm
from pointjepa.tasks.classification import main as finetune
from tests.conftest import CLASSIFIER_ARGS, DEMO_PRETRAINING_ARGS
from tests.fakefolder import write_cloud_folder

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def folder_args(prefix: str, data_dir: Path) -> list[str]:
    return [f"{prefix}.data_dir={data_dir}", f"{prefix}.num_points=128", f"{prefix}.batch_size=8"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> SimpleNamespace:
    """The demo pretraining with the folder overlay, tiny, 2 epochs, on 30 training files of 3 classes, every type."""
    root = tmp_path_factory.mktemp("folder_run")
    data_dir = write_cloud_folder(root, n_train=10, n_test=4)
    pretrain(
        [
            "fit",
            "-c",
            str(ROOT / "configs/demo/pretraining.yaml"),
            "-c",
            str(ROOT / "configs/folder/_pretraining.yaml"),
            *(arg for arg in DEMO_PRETRAINING_ARGS if not arg.startswith("--data.")),
            *folder_args("--data.init_args", data_dir),
            *folder_args("--model.svm_validation.folder.init_args", data_dir),
            "--data.init_args.num_workers=0",
            "--trainer.max_epochs=2",
            f"--trainer.default_root_dir={root}",
        ]
    )
    return SimpleNamespace(root=root, data_dir=data_dir, ckpt=root / "checkpoints/last.ckpt")


def test_pretraining_reads_the_folder_and_validates_with_an_svm_on_its_classes(pretrained):
    summary = json.loads((pretrained.root / "metrics.json").read_text())
    assert {"train_loss", "val_loss", "svm_val_acc_folder", "svm_train_acc_folder"} <= set(summary)
    assert (pretrained.data_dir / ".pointjepa-cache-128pts-seed0.npz").is_file()  # the overlay's cache: true
    config = yaml.safe_load((pretrained.root / "config.yaml").read_text())
    assert config["data"]["class_path"] == "pointjepa.datasets.PointCloudFolderDataModule"


def test_probe_takes_the_folder_from_the_runs_config(pretrained):
    result = svm.main(
        ["--ckpt", str(pretrained.ckpt), "--config", str(pretrained.root / "config.yaml"), "--device", "cpu"]
    )
    (row,) = result["results"]["folder"]
    assert row["C"] == 1.0 and 0.0 <= row["test_acc_mean"] <= 1.0  # the demo config's svm_validation_C


def test_classification_fine_tunes_on_the_class_folders(pretrained, tmp_path):
    finetune(
        [
            "fit",
            *CLASSIFIER_ARGS,
            "--data.class_path=pointjepa.datasets.PointCloudFolderDataModule",
            *folder_args("--data.init_args", pretrained.data_dir),
            f"--model.pretrained_ckpt_path={pretrained.ckpt}",
            "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={tmp_path}",
            *QUIET,
        ]
    )
    checkpoint = torch.load(tmp_path / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["num_classes"] == 3  # linked from ball, box, cone
    assert checkpoint["state_dict"]["cls_head.8.weight"].shape[0] == 3


def test_classification_refuses_unlabelled_folders(pretrained, tmp_path):
    data_dir = write_cloud_folder(tmp_path, n_train=2, n_test=1, layout="unlabelled")
    with pytest.raises(DataError, match="no class folders, so no classes to train a classifier on"):
        finetune(["fit", *CLASSIFIER_ARGS, "--data.class_path=pointjepa.datasets.PointCloudFolderDataModule",
                  f"--data.init_args.data_dir={data_dir}", *QUIET])  # fmt: skip


# ---- eval.embed ----------------------------------------------------------------------------------------------
def test_embed_writes_load_encoder_features_neighbours_and_tsne(pretrained, tmp_path, capsys):
    out, png = tmp_path / "features.npz", tmp_path / "tsne.png"
    arrays = embed.main(
        ["--ckpt", str(pretrained.ckpt), "--input", str(pretrained.data_dir), "--output", str(out),
         "--sample_points", "128", "--neighbors", "3", "--tsne", str(png), "--batch_size", "5", "--device", "cpu"]
    )  # fmt: skip
    with np.load(out) as saved:
        assert set(saved.files) == {"features", "files", "groups", "root", "neighbors", "similarities"}
        for key in arrays:
            np.testing.assert_array_equal(saved[key], arrays[key])
    data = PointCloudFolderDataModule(str(pretrained.data_dir), num_points=128, pin_memory=False)
    data.setup("fit")
    assert arrays["files"].tolist() == sorted(data.train_files + data.val_files)
    order = np.argsort(data.train_files + data.val_files)
    clouds = np.concatenate([data.train_dataset.points, data.val_dataset.points])[order]
    with torch.no_grad():
        expected = pointjepa.load_encoder(pretrained.ckpt)(torch.from_numpy(clouds)).numpy()
    np.testing.assert_allclose(arrays["features"], expected, rtol=1e-4, atol=1e-5)
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    similarity = unit @ unit.T - 3 * np.eye(len(unit))
    np.testing.assert_array_equal(arrays["neighbors"], np.argsort(-similarity, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(arrays["similarities"], np.sort(similarity, axis=1)[:, ::-1][:, :3], atol=1e-5)
    assert set(arrays["groups"]) == {"ball", "box", "cone"}
    assert Image.open(png).size[0] > 100
    assert f"{arrays['files'][0]} -> {arrays['files'][arrays['neighbors'][0, 0]]}" in capsys.readouterr().out


def test_embed_takes_a_glob_or_one_file(pretrained, tmp_path):
    common = ["--ckpt", str(pretrained.ckpt), "--sample_points", "128", "--device", "cpu"]
    globbed = embed.main(
        [*common, "--input", f"{pretrained.data_dir}/*/train/*.off", "--output", str(tmp_path / "a.npz")]
    )
    assert globbed["files"].tolist() == [
        "ball/train/ball_0006.off",
        "box/train/box_0006.off",
        "cone/train/cone_0006.off",
    ]
    assert Path(str(globbed["root"])) == pretrained.data_dir
    one = embed.main(
        [*common, "--input", str(pretrained.data_dir / "box/train/box_0006.off"), "--output", str(tmp_path / "b.npz")]
    )
    assert one["files"].tolist() == ["box_0006.off"] and one["groups"].tolist() == ["."]
    np.testing.assert_allclose(one["features"][0], globbed["features"][1], rtol=1e-5, atol=1e-6)


def run_embed(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pointjepa.eval.embed", "--device", "cpu", "--sample_points", "128", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_embed_command_names_a_bad_file_in_one_line_and_writes_nothing(pretrained, tmp_path):
    data_dir = tmp_path / "scans"
    data_dir.mkdir()
    for i in range(3):
        np.save(data_dir / f"scan{i}.npy", np.random.default_rng(i).random((200, 3)))
    (data_dir / "scan1.npy").write_bytes(b"\x93NUMPY broken")
    out = tmp_path / "features.npz"
    result = run_embed("--ckpt", str(pretrained.ckpt), "--input", str(data_dir), "--output", str(out))
    assert result.returncode == 1 and not out.exists()
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == [
        f"error: {data_dir / 'scan1.npy'}: not a readable .npy point file: " + error[0].split("file: ", 1)[1]
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "nowhere/*.ply"], "--input nowhere/\\*.ply: no such folder or file"),
        (["--neighbors", "42"], "--neighbors 42: expected fewer than the 42 files"),
    ],
)
def test_embed_refuses_bad_options(pretrained, tmp_path, args, message):
    options = ["--ckpt", str(pretrained.ckpt), "--input", str(pretrained.data_dir), "--output", str(tmp_path / "x.npz")]
    with pytest.raises((DataError, ValueError), match=message):
        embed.main([*options, "--sample_points", "128", "--device", "cpu", *args])

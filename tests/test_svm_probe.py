"""The SVM linear-probe command and SVM validation during pretraining."""

import json

import pytest
import yaml

from pointjepa.eval.svm import main
from tests.fakeckpt import tiny_backbone_state, write_checkpoint
from tests.fakedata import write_modelnet40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "pre.ckpt", "ours", tiny_backbone_state())


def test_probe_on_synthetic_shapes_with_seeds_and_c_sweep(checkpoint, tmp_path, capsys):
    out = tmp_path / "probe.json"
    result = main(
        [
            "--ckpt",
            str(checkpoint),
            "--data",
            "synthetic",
            "--num_points",
            "256",
            "--seeds",
            "0",
            "1",
            "--C",
            "0.01",
            "1.0",
            "--json",
            str(out),
            "--device",
            "cpu",
        ]
    )
    rows = result["results"]["synthetic"]
    assert [row["C"] for row in rows] == [0.01, 1.0]
    assert all(0.0 <= row["test_acc_mean"] <= 1.0 and len(row["test_acc_runs"]) == 2 for row in rows)
    assert rows[1]["train_acc_mean"] > 1 / 8  # a random encoder still separates the synthetic shapes somewhat
    assert json.loads(out.read_text()) == result
    assert "synthetic" in capsys.readouterr().out


def test_probe_reads_modelnet40_files_and_original_layout(tmp_path):
    original = write_checkpoint(tmp_path / "orig.ckpt", "original", tiny_backbone_state())
    root = write_modelnet40(tmp_path, n_train=12, n_test=6, num_points=128, num_classes=3)
    config = tmp_path / "probe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "svm_validation": {
                    "mn40": {
                        "class_path": "pointjepa.datasets.ModelNet40Ply2048DataModule",
                        "init_args": {"data_dir": str(root), "batch_size": 4, "drop_last": False},
                    }
                }
            }
        )
    )
    result = main(["--ckpt", str(original), "--config", str(config), "--num_points", "64", "--device", "cpu"])
    assert set(result["results"]) == {"mn40"}


def test_probe_config_without_svm_validation_is_refused(checkpoint, tmp_path):
    config = tmp_path / "empty.yaml"
    config.write_text("model: {}\n")
    with pytest.raises(SystemExit, match="svm_validation"):
        main(["--ckpt", str(checkpoint), "--config", str(config)])

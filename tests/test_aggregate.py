"""``pointjepa.eval.aggregate`` on fake run directories of every source, and the protocol scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pointjepa.eval import aggregate
from tests.conftest import CLASSIFIER_ARGS, save_checkpoint, tiny_pretraining
from tests.fakedata import write_modelnet40

ROOT = Path(__file__).resolve().parents[1]


def csv_run(run: Path, val_acc: list[float], val_loss: list[float]) -> Path:
    log = run / "lightning_logs/version_0"
    log.mkdir(parents=True)
    rows = ["epoch,step,train_loss,val_acc,val_loss"]
    for epoch, (acc, loss) in enumerate(zip(val_acc, val_loss)):
        rows += [
            f"{epoch},{epoch * 10 + 5},0.5,,",
            f"{epoch},{epoch * 10 + 9},,{acc},{loss}",
        ]  # train rows leave val cells empty
    (log / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def test_csv_runs_give_mean_and_std_of_the_best_epoch(tmp_path):
    runs = [
        csv_run(tmp_path / "modelnet40/seed0", [0.5, 0.90, 0.85], [2.0, 1.0, 1.5]),
        csv_run(tmp_path / "modelnet40/seed1", [0.6, 0.80, 0.70], [3.0, 0.5, 0.7]),
        csv_run(tmp_path / "modelnet40/seed2", [0.85, 0.2, 0.1], [0.9, 2.0, 3.0]),
    ]
    rows = aggregate.aggregate(runs, ["val_acc", "val_loss"])
    acc, loss = rows
    assert acc["values"] == [0.90, 0.80, 0.85] and acc["n"] == 3
    assert acc["mean"] == pytest.approx(0.85) and acc["std"] == pytest.approx(np.std([0.9, 0.8, 0.85]))
    assert loss["values"] == [1.0, 0.5, 0.9]  # losses: the minimum
    table = aggregate.markdown_table(rows, percent=True)
    assert f"| {tmp_path / 'modelnet40'} | val_acc | 85.00 ± 4.08 | 3 |" in table
    assert f"| {tmp_path / 'modelnet40'} | val_loss | 0.80 ± 0.22 | 3 |" in table  # losses are not percentages
    last = aggregate.aggregate(runs, ["val_acc"], reduce="last")[0]
    assert last["values"] == [0.85, 0.70, 0.1]


def test_run_summaries_result_json_and_wandb_summaries_are_read(tmp_path):
    summary = tmp_path / "task/seed0/lightning_logs/version_0/metrics.json"  # MetricsSummary in the log_dir
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"val_acc": {"last": 0.6, "max": 0.8125, "min": 0.2}, "val_loss": {"last": 1.0}}))
    top = tmp_path / "task/seed1"
    top.mkdir()
    (top / "metrics.json").write_text(json.dumps({"val_acc": {"last": 0.7, "max": 0.75, "min": 0.1}}))
    wandb = tmp_path / "task/seed2/wandb/run-20250101_000000-abc/files/wandb-summary.json"
    wandb.parent.mkdir(parents=True)
    wandb.write_text(json.dumps({"val_acc": {"max": 0.7, "last": 0.65}, "train_loss": 0.1}))
    few_shot = tmp_path / "task/seed3"
    few_shot.mkdir()
    (few_shot / "result.json").write_text(json.dumps({"way": 5, "shot": 10, "fold": 3, "val_acc": 0.95}))
    (few_shot / "broken.json").write_bytes(b"\xff not json")  # skipped
    runs = [summary.parents[2], top, tmp_path / "task/seed2", few_shot]
    assert [aggregate.run_value(run, "val_acc", "best")[1] for run in runs] == ["json", "json", "wandb", "json"]
    row = aggregate.aggregate(runs, ["val_acc"])[0]
    assert row["values"] == pytest.approx([0.8125, 0.75, 0.7, 0.95])
    assert aggregate.run_value(tmp_path / "task/seed2", "val_acc", "last")[0] == 0.65
    assert aggregate.run_value(runs[0], "val_acc", "last")[0] == 0.6
    assert aggregate.run_value(runs[0], "val_loss", "best")[0] == 1.0  # no min entry: the last value


def test_svm_probe_json_gives_svm_val_acc(tmp_path):
    for seed, acc in enumerate([0.93, 0.94]):
        run = tmp_path / f"svm/seed{seed}"
        run.mkdir(parents=True)
        result = {
            "results": {"modelnet40": [{"C": 0.012, "train_acc_mean": 1.0, "test_acc_mean": acc, "test_acc_std": 0.0}]}
        }
        (run / "svm.json").write_text(json.dumps(result))
    row = aggregate.aggregate(sorted((tmp_path / "svm").iterdir()), ["svm_val_acc_modelnet40"])[0]
    assert row["mean"] == pytest.approx(0.935) and row["std"] == pytest.approx(0.005)


def test_group_by_pattern_and_command_output(tmp_path, capsys):
    for setting, accs in {"5way_10shot": [0.9, 1.0], "10way_20shot": [0.8, 0.9]}.items():
        for fold, acc in enumerate(accs):
            (tmp_path / setting / f"fold{fold}").mkdir(parents=True)
            (tmp_path / setting / f"fold{fold}/result.json").write_text(json.dumps({"val_acc": acc}))
    runs = [str(p) for p in sorted(tmp_path.glob("*/fold*"))]
    output = tmp_path / "table.md"
    aggregate.main([*runs, "--group-by", r"(\d+way_\d+shot)", "--percent", "--digits", "1", "--output", str(output)])
    expected = "| 10way_20shot | val_acc | 85.0 ± 5.0 | 2 |\n| 5way_10shot | val_acc | 95.0 ± 5.0 | 2 |\n"
    assert capsys.readouterr().out.endswith(expected) and output.read_text().endswith(expected)


def test_missing_metrics_are_reported(tmp_path, capsys):
    run = csv_run(tmp_path / "a/seed0", [0.5], [1.0])
    empty = tmp_path / "a/seed1"
    empty.mkdir()
    rows = aggregate.main([str(run), str(empty), "--metric", "val_acc"])
    assert rows[0]["n"] == 1 and f"{empty}: no val_acc found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="none of the 2 run"):
        aggregate.main([str(run), str(empty), "--metric", "val_top_3_acc"])
    with pytest.raises(SystemExit):
        aggregate.main([str(tmp_path / "nowhere")])


# ---- protocol scripts --------------------------------------------------------------------------------------
SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))
QUICK = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.precision=32",
]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_scripts_are_valid_strict_bash(script):
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if script.name != "_protocol.sh":
        assert "set -euo pipefail" in script.read_text()


def run_script(name: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"} | {"WANDB_MODE": "disabled", **env}
    env |= {"PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def modelnet_runs(tmp_path_factory):
    """``classification_modelnet.sh`` over two seeds on generated ModelNet40 files, from a tiny pretraining
    checkpoint."""
    root = tmp_path_factory.mktemp("protocol")
    data_dir = write_modelnet40(root, n_train=4, n_test=4, num_points=128)
    save_checkpoint(tiny_pretraining(), root / "pre.ckpt")
    data = [f"--data.init_args.data_dir={data_dir}", "--data.init_args.batch_size=2"]
    result = run_script(
        "classification_modelnet.sh",
        [str(root / "pre.ckpt"), *CLASSIFIER_ARGS, *QUICK, *data],
        {"SEEDS": "0 1", "OUT_DIR": str(root / "runs")},
        root,
    )
    return root, data, result


def test_fine_tuning_script_runs_every_seed_and_aggregates(modelnet_runs):
    root, _, result = modelnet_runs
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "runs/seed0/.done").is_file() and (root / "runs/seed1/.done").is_file()
    table = (root / "runs/results.md").read_text()
    assert "| val_acc |" in table and table.rstrip().endswith("| 2 |") and "±" in result.stdout


def test_fine_tuning_script_needs_the_pretrained_checkpoint(tmp_path):
    result = run_script("classification_modelnet.sh", [str(tmp_path / "missing.ckpt")], {}, tmp_path)
    assert result.returncode == 1 and "missing.ckpt: file not found" in result.stderr
    assert run_script("part_segmentation.sh", [], {"PRETRAINED_CKPT": ""}, tmp_path).returncode == 2


@pytest.mark.slow
def test_vote_script_votes_each_seeds_best_checkpoint(modelnet_runs):
    root, data, result = modelnet_runs
    assert result.returncode == 0, result.stderr[-3000:]
    vote = run_script(
        "classification_modelnet_vote.sh", [str(root / "runs"), *data], {"SEEDS": "0 1", "VOTE_NUM": "2"}, root
    )
    assert vote.returncode == 0, vote.stderr[-3000:]
    assert "| val_vote_acc |" in (root / "runs/results.md").read_text()

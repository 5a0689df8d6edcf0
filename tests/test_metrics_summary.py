"""``MetricsSummary``: every run leaves ``metrics.json`` (last / min / max per metric) that agrees with
Lightning's own records (CSVLogger history, ModelCheckpoint's best score), continues on resume, and is what
``pointjepa.eval.aggregate`` reads when a run has no CSV history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from pointjepa.callbacks.metrics_summary import MetricsSummary
from pointjepa.eval import aggregate
from tests.conftest import quiet_trainer, tiny_classifier, tiny_shapes


def fit(root: Path, epochs: int, logger, callbacks: list, ckpt_path: str | None = None) -> pl.Trainer:
    torch.manual_seed(0)
    model = tiny_classifier()
    data = tiny_shapes(val_samples_per_class=2)
    trainer = quiet_trainer(
        max_epochs=epochs,
        limit_train_batches=2,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=root,
        num_sanity_val_steps=1,
    )
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return trainer


def history(paths: list[Path], metric: str) -> list[float]:
    values = []
    for path in paths:
        with path.open(newline="") as f:
            values += [float(row[metric]) for row in csv.DictReader(f) if row.get(metric)]
    return values


def test_summary_agrees_with_the_csv_history_and_continues_on_resume(tmp_path):
    trainer = fit(tmp_path, 2, CSVLogger(tmp_path), [MetricsSummary(), ModelCheckpoint(save_last=True)])
    first = json.loads((Path(trainer.log_dir) / "metrics.json").read_text())
    csv_files = [Path(trainer.log_dir) / "metrics.csv"]
    for metric in ("val_acc", "val_loss", "train_loss_epoch"):
        values = history(csv_files, metric)
        assert first[metric] == pytest.approx({"last": values[-1], "min": min(values), "max": max(values)})
    last_ckpt = str(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    resumed = fit(tmp_path, 3, CSVLogger(tmp_path), [MetricsSummary()], ckpt_path=last_ckpt)
    summary = json.loads((Path(resumed.log_dir) / "metrics.json").read_text())
    csv_files.append(Path(resumed.log_dir) / "metrics.csv")
    values = history(csv_files, "val_loss")
    assert len(values) == 3  # two epochs, then the resumed third
    assert summary["val_loss"] == pytest.approx({"last": values[-1], "min": min(values), "max": max(values)})


def test_run_without_a_logger_is_aggregated_from_its_summary(tmp_path):
    checkpoint = ModelCheckpoint(monitor="val_acc", mode="max")
    fit(tmp_path, 2, False, [MetricsSummary(), checkpoint])
    assert (tmp_path / "metrics.json").is_file()  # no logger: the trainer's default_root_dir
    value, source = aggregate.run_value(tmp_path, "val_acc", "best")
    assert source == "json" and value == pytest.approx(float(checkpoint.best_model_score))

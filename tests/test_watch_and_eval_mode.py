"""W&B ``logger.watch`` as the original calls it in every task's setup (on by default, configurable), and the
EMA teacher's intended eval mode explained in one line instead of Lightning's warning."""

from __future__ import annotations

import logging
import warnings
from types import SimpleNamespace

import pytest
from pytorch_lightning.loggers import WandbLogger

from pointjepa.models.base import BackboneModule
from pointjepa.models.eval_mode import teacher_eval_modules
from pointjepa.models.part_segmentation import PointJepaPartSegmentation
from tests.conftest import SEGMENTER, quiet_trainer, tiny_classifier, tiny_pretraining, tiny_shapes


class RecordingWandb(WandbLogger):
    """A ``WandbLogger`` that starts no run and records its ``watch`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def watch(self, model, log="gradients", log_freq=100, log_graph=True) -> None:
        self.calls.append((model, log, log_freq, log_graph))


def tiny_segmenter(**kwargs) -> PointJepaPartSegmentation:
    linked = {"num_classes": 2, "num_seg_classes": 5, "category_to_parts": {"a": [0, 1], "b": [2, 3, 4]}}
    return PointJepaPartSegmentation(**{**SEGMENTER, **linked, **kwargs})


def set_up(model: BackboneModule, *loggers, stage: str = "fit") -> None:
    """``model.setup(stage)`` as a Trainer with ``loggers`` calls it."""
    model._trainer = SimpleNamespace(loggers=list(loggers), max_epochs=2, estimated_stepping_batches=4)
    model.setup(stage)


@pytest.mark.parametrize("build", [tiny_pretraining, tiny_classifier, tiny_segmenter])
def test_every_task_watches_gradients_every_100_steps_with_its_graph_as_the_original(build):
    model, logger = build(), RecordingWandb()
    set_up(model, logger)
    assert logger.calls == [(model, "gradients", 100, True)]  # the original's `logger.watch(self)`
    set_up(model, logger, stage="validate")
    assert len(logger.calls) == 1  # once per module: W&B refuses a second graph hook


def test_watch_can_log_other_histograms_less_often_or_be_turned_off():
    model, first, second = (
        tiny_classifier(wandb_watch="all", wandb_watch_log_freq=7),
        RecordingWandb(),
        RecordingWandb(),
    )
    set_up(model, first, second)
    assert first.calls == [(model, "all", 7, True)] and second.calls == []  # the first W&B logger only
    silent, logger = tiny_classifier(wandb_watch=None), RecordingWandb()
    set_up(silent, logger)
    assert logger.calls == []
    with pytest.raises(ValueError, match="wandb_watch: expected one of 'gradients', 'parameters', 'all'"):
        tiny_classifier(wandb_watch="weights")
    with pytest.raises(ValueError, match="wandb_watch_log_freq"):
        tiny_classifier(wandb_watch_log_freq=0)


def fit_warnings(model: BackboneModule, caplog) -> list[str]:
    """Fit ``model`` for one step -> the warnings it raised (all of them shown); checks that no filter on
    Lightning's eval-mode warning outlives the fit."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(model, tiny_shapes())
        assert not [f for f in warnings.filters if f[1] is not None and "in eval mode" in f[1].pattern]
    return [str(w.message) for w in caught]


def test_pretraining_fit_explains_the_teacher_eval_mode_instead_of_lightnings_warning(caplog):
    model = tiny_pretraining()
    names = teacher_eval_modules(model)
    assert names and all(name.startswith("teacher.ema_model") for name in names)
    messages = fit_warnings(model, caplog)
    assert not [m for m in messages if "in eval mode" in m]
    assert caplog.text.count(f"The EMA teacher's {len(names)} modules stay in eval mode") == 1


def test_other_modules_in_eval_mode_still_get_lightnings_warning(caplog):
    model = tiny_pretraining()
    model.predictor.eval()  # not intended: Lightning's warning must show
    assert teacher_eval_modules(model) is None
    messages = fit_warnings(model, caplog)
    assert [m for m in messages if "module(s) in eval mode at the start of training" in m]
    assert "stay in eval mode" not in caplog.text

"""Freezing and scheduled unfreezing: the pure schedule, and a real fit that keeps frozen parts unchanged."""

import pytest
import pytorch_lightning as pl
import torch

from pointjepa.modules.freezing import UnfreezeSchedule
from tests.conftest import quiet_trainer, tiny_classifier, tiny_shapes


def test_by_default_everything_trains_from_the_first_epoch():
    state = UnfreezeSchedule(depth=4).trainable(0, 10)
    assert state.tokenizer and state.positional_encoding and state.encoder_norm
    assert state.encoder_blocks == {0, 1, 2, 3}


def test_encoder_unfreezes_at_the_configured_epoch():
    schedule = UnfreezeSchedule(
        depth=4, encoder_unfreeze_epoch=3, tokenizer_unfreeze_epoch=2, positional_encoding_unfreeze_epoch=1
    )
    states = [schedule.trainable(epoch, 10) for epoch in range(5)]
    assert [s.encoder_blocks == {0, 1, 2, 3} and s.encoder_norm for s in states] == [False, False, False, True, True]
    assert [len(s.encoder_blocks) for s in states[:3]] == [0, 0, 0]
    assert [s.tokenizer for s in states] == [False, False, True, True, True]
    assert [s.positional_encoding for s in states] == [False, True, True, True, True]


def test_freeze_and_unfreeze_layer_lists():
    partial = UnfreezeSchedule(depth=4, encoder_freeze_layers=(0, 1), encoder_unfreeze_epoch=2)
    assert partial.trainable(0, 10).encoder_blocks == {2, 3} and partial.trainable(0, 10).encoder_norm
    assert partial.trainable(2, 10).encoder_blocks == {0, 1, 2, 3}
    some = UnfreezeSchedule(depth=4, encoder_unfreeze_layers=(2, -1), encoder_unfreeze_epoch=1)
    assert some.trainable(0, 10).encoder_blocks == set()
    assert some.trainable(1, 10).encoder_blocks == {2, 3} and not some.trainable(1, 10).encoder_norm


def test_stepwise_unfreezing_releases_the_last_blocks_first():
    schedule = UnfreezeSchedule(
        depth=4, encoder_unfreeze_epoch=2, encoder_unfreeze_stepwise=True, encoder_unfreeze_stepwise_num_layers=1
    )
    blocks = [sorted(schedule.trainable(epoch, 10).encoder_blocks) for epoch in range(10)]
    assert blocks == [[], [], [3], [3], [2, 3], [2, 3], [1, 2, 3], [1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert not any(schedule.trainable(epoch, 10).encoder_norm for epoch in range(10))  # as the original
    chosen = UnfreezeSchedule(depth=4, encoder_unfreeze_layers=(1, 2, 3), encoder_unfreeze_stepwise=True)
    assert chosen.trainable(0, 4).encoder_blocks == {2, 3} and chosen.trainable(2, 4).encoder_blocks == {1, 2, 3}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(encoder_freeze_layers=(0,), encoder_unfreeze_stepwise=True), "encoder_freeze_layers"),
        (dict(encoder_unfreeze_layers=(4,)), "encoder_unfreeze_layers"),
        (dict(encoder_unfreeze_epoch=-1), "encoder_unfreeze_epoch"),
    ],
)
def test_bad_freezing_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        UnfreezeSchedule(depth=4, **options)


class GradRecorder(pl.Callback):
    """Parameters at each epoch start and, per epoch, whether frozen parts ever got a gradient."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.encoder_grads: dict[int, bool] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.snapshots.append({k: v.detach().clone() for k, v in pl_module.named_parameters()})

    def on_train_end(self, trainer, pl_module) -> None:
        self.on_train_epoch_start(trainer, pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        got = any(p.grad is not None for p in [*pl_module.encoder.parameters(), *pl_module.tokenizer.parameters()])
        self.encoder_grads[trainer.current_epoch] = self.encoder_grads.get(trainer.current_epoch, False) or got


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def test_frozen_parts_stay_unchanged_until_their_unfreeze_epoch(tmp_path):
    recorder = GradRecorder()
    model = tiny_classifier(
        encoder_unfreeze_epoch=1,
        tokenizer_unfreeze_epoch=1,
        positional_encoding_unfreeze_epoch=1,
        lr_scheduler_linear_warmup_epochs=0,
    )
    trainer = quiet_trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=0,
        enable_checkpointing=False,
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    trainer.fit(model, tiny_shapes())
    start, after_epoch0, end = recorder.snapshots
    assert recorder.encoder_grads == {0: False, 1: True}
    for prefix in ("encoder.", "tokenizer.", "positional_encoding."):
        assert not changed(start, after_epoch0, prefix), prefix
        assert changed(after_epoch0, end, prefix), prefix
    assert changed(start, after_epoch0, "cls_head.")

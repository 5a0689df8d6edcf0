"""Downstream defaults that follow the original Point-JEPA code: stepwise unfreezing, part-segmentation
accuracies, test-time voting, and the evaluation transforms of features outside training.

Expected values are worked out by hand from the original's ``models/classification.py``
(``on_train_epoch_start``, ``validation_step``), ``models/part_segmentation.py`` (``validation_step``)
and ``eval/voting.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from pointjepa.api import load_encoder
from pointjepa.eval import svm, voting
from pointjepa.models.part_segmentation import PointJepaPartSegmentation
from pointjepa.modules.freezing import UnfreezeSchedule
from pointjepa.modules.tokenizer import PointcloudTokenizer
from tests.conftest import SEGMENTER, save_checkpoint, tiny_classifier, tiny_pretraining
from tests.fakeckpt import layout_checkpoint, tiny_backbone_state

ROOT = Path(__file__).resolve().parents[1]
ALL = list(range(12))


def released(schedule: UnfreezeSchedule, epochs: list[int], max_epochs: int) -> dict[int, list[int]]:
    return {epoch: sorted(schedule.trainable(epoch, max_epochs).encoder_blocks) for epoch in epochs}


# ---- stepwise unfreezing -----------------------------------------------------------------------------------
def test_stepwise_unfreezing_follows_the_original_interval_for_modelnet40_epochs():
    # original: range(150, 200, int((200 - 150) / (12 / 2))) = 150, 158, 166, 174, 182, 190, 198;
    # step i unfreezes blocks[-(2i + 1)], blocks[-(2i + 2)]
    schedule = UnfreezeSchedule(depth=12, encoder_unfreeze_epoch=150, encoder_unfreeze_stepwise=True)
    assert schedule.stepwise_interval(12, 200) == 8
    assert released(schedule, [0, 149, 150, 157, 158, 165, 166, 174, 182, 189, 190, 199], 200) == {
        0: [], 149: [], 150: [10, 11], 157: [10, 11], 158: [8, 9, 10, 11], 165: [8, 9, 10, 11],
        166: [6, 7, 8, 9, 10, 11], 174: [4, 5, 6, 7, 8, 9, 10, 11], 182: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        189: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 190: ALL, 199: ALL,
    }  # fmt: skip


def test_stepwise_unfreezing_interval_uses_the_fractional_number_of_steps():
    # original: int(50 / (12 / 5)) = int(20.83) = 20 -> steps at 0, 20, 40 (a ceil-based count would give 16)
    schedule = UnfreezeSchedule(depth=12, encoder_unfreeze_stepwise=True, encoder_unfreeze_stepwise_num_layers=5)
    assert released(schedule, [0, 19, 20, 39, 40, 49], 50) == {
        0: [7, 8, 9, 10, 11], 19: [7, 8, 9, 10, 11], 20: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        39: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 40: ALL, 49: ALL,
    }  # fmt: skip


def test_stepwise_unfreezing_of_chosen_layers_takes_them_from_the_end_of_the_list():
    # original: int((30 - 10) / (4 / 1)) = 5 -> encoder_unfreeze_layers[-1], [-2], ... at 10, 15, 20, 25
    schedule = UnfreezeSchedule(
        depth=12,
        encoder_unfreeze_epoch=10,
        encoder_unfreeze_layers=(4, 6, 8, 10),
        encoder_unfreeze_stepwise=True,
        encoder_unfreeze_stepwise_num_layers=1,
    )
    assert released(schedule, [9, 10, 14, 15, 20, 25, 29], 30) == {
        9: [],
        10: [10],
        14: [10],
        15: [8, 10],
        20: [6, 8, 10],
        25: [4, 6, 8, 10],
        29: [4, 6, 8, 10],
    }


def test_encoder_norm_trains_only_when_the_original_unfreezes_it():
    stepwise = UnfreezeSchedule(depth=12, encoder_unfreeze_stepwise=True)  # only blocks get requires_grad
    assert not any(stepwise.trainable(epoch, 12).encoder_norm for epoch in range(12))
    some = UnfreezeSchedule(depth=12, encoder_unfreeze_epoch=2, encoder_unfreeze_layers=(10, 11))
    assert [some.trainable(epoch, 5).encoder_norm for epoch in range(5)] == [False] * 5
    whole = UnfreezeSchedule(depth=12, encoder_unfreeze_epoch=2)  # encoder.requires_grad_(True)
    assert [whole.trainable(epoch, 5).encoder_norm for epoch in range(5)] == [False, False, True, True, True]
    partly = UnfreezeSchedule(depth=12, encoder_unfreeze_epoch=2, encoder_freeze_layers=(0, 1))  # norm never frozen
    assert [partly.trainable(epoch, 5).encoder_norm for epoch in range(5)] == [True] * 5


# ---- part segmentation accuracies --------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_part_segmentation_accuracies_use_the_unrestricted_argmax_and_miou_the_restricted_one():
    model = PointJepaPartSegmentation(
        **SEGMENTER, num_classes=2, num_seg_classes=4, category_to_parts={"a": [0, 1], "b": [2, 3]}
    ).eval()
    logits = torch.tensor(
        [
            [[5, 0, 0, 0], [3, 0, 5, 0], [0, 3, 0, 5], [0, 5, 0, 0]],  # argmax 0 2 3 1, within parts 0-1: 0 0 1 1
            [[5, 0, 3, 0], [0, 0, 5, 0], [0, 0, 5, 0], [0, 5, 3, 0]],  # argmax 0 2 2 1, within parts 2-3: 2 2 2 2
        ],
        dtype=torch.float32,
    )
    model.forward = lambda points, category: F.log_softmax(logits, dim=-1)
    seg = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 3]])
    model.validation_step((torch.randn(2, 4, 3), torch.tensor([0, 1]), seg), 0)
    # unrestricted: 4 of 8 points right; per part 1/2, 1/2, 2/3, 0/1 (parts 0-3 all occur) -> mean 5/12
    assert model.eval_acc.compute().item() == pytest.approx(0.5)
    assert model.eval_macc.compute().item() == pytest.approx(5 / 12)
    # restricted: shape a all right (IoU 1); shape b parts 2: 3/4, 3: 0/1 -> 3/8; mean over shapes 11/16
    mious = model.eval_miou.compute()
    assert mious["ins_miou"].item() == pytest.approx(11 / 16)
    assert mious["cat_miou"].item() == pytest.approx(11 / 16)


# ---- voting ------------------------------------------------------------------------------------------------
def record_tokenizer(model) -> list[tuple[torch.Tensor, bool, torch.Tensor]]:
    """(input clouds, random_start_in_eval, centers) of every tokenizer call of ``model``."""
    calls: list = []

    def hook(module, args, output):
        calls.append((args[0].clone(), module.random_start_in_eval, output[1].clone()))

    model.tokenizer.register_forward_hook(hook)
    return calls


def test_random_start_vote_passes_the_evaluation_input_with_random_fps_starts_only():
    torch.manual_seed(0)
    model = tiny_classifier(vote_num=3).eval()
    points = torch.randn(4, 100, 3)
    calls = record_tokenizer(model)
    with torch.no_grad():
        probabilities = model.vote_probabilities(points)
        prepared = model.prepare(points, train=False)
    [(inputs, random_start, centers)] = calls
    assert random_start and not model.tokenizer.random_start_in_eval
    torch.testing.assert_close(inputs, prepared.repeat(3, 1, 1))  # no scaling or shifting between passes
    per_pass = centers.reshape(3, 4, 8, 3)
    assert not torch.equal(per_pass[0], per_pass[1])
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(4))


def test_voting_command_subsamples_from_a_random_start_and_applies_the_validation_transforms_once():
    torch.manual_seed(0)
    model = tiny_classifier(vote_num=2).eval()
    points = torch.randn(4, 100, 3) * 3 + 1
    calls = record_tokenizer(model)
    with torch.no_grad():
        voting.vote(model, points)
        voting.vote(model, points)
    first, second = calls[0][0], calls[1][0]
    assert first.shape == (8, 64, 3) and torch.equal(first[:4], first[4:])
    torch.testing.assert_close(first.mean(1), torch.zeros(8, 3), atol=1e-5, rtol=0)  # center
    torch.testing.assert_close(first.norm(dim=-1).amax(1), torch.ones(8))  # unit sphere, no extra scale
    assert not torch.equal(first, second)  # each iteration draws its own subsample


def test_votes_are_reproducible_given_a_seed():
    model = tiny_classifier(vote_num=2).eval()
    points = torch.randn(4, 100, 3)

    def voted(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return voting.vote(model, points)

    assert torch.equal(voted(3), voted(3)) and not torch.equal(voted(3), voted(4))


def test_voting_command_has_the_original_options_and_defaults():
    cfg = voting.build_parser().parse_args(["--finetuned_ckpt_path", "x.ckpt", "--seed_everything", "2"])
    assert (cfg.ckpt, cfg.seed, cfg.vote_num, cfg.vote_iterations, cfg.vote_method) == (
        "x.ckpt",
        2,
        10,
        300,
        "random_start",
    )
    assert voting.build_parser().parse_args(["--ckpt", "x.ckpt"]).seed == 0


def test_voting_command_reports_the_best_and_the_mean_over_iterations(tmp_path, capsys):
    model = tiny_classifier()
    save_checkpoint(model, tmp_path / "c.ckpt")
    data = [
        "--data.class_path=pointjepa.datasets.SyntheticShapesDataModule",
        "--data.init_args.num_points=100",
        "--data.init_args.samples_per_class=1",
        "--data.init_args.val_samples_per_class=2",
        "--data.init_args.shapes=[sphere, cube, cone, torus, disk]",
        "--data.init_args.batch_size=4",
    ]
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        voting.main(["--ckpt", str(tmp_path / "c.ckpt"), *data, "--vote_num=2", "--vote_iterations=3",
                     "--seed=5", f"--json={out}", "--device=cpu"])  # fmt: skip
        runs.append(json.loads(out.read_text()))
    first = runs[0]
    assert first == runs[1]
    assert len(first["val_vote_acc_runs"]) == 3 and first["val_vote_acc"] == max(first["val_vote_acc_runs"])
    assert first["val_vote_acc_mean"] == pytest.approx(sum(first["val_vote_acc_runs"]) / 3)
    assert "3/3 vote accuracy" in capsys.readouterr().out


# ---- features outside training -----------------------------------------------------------------------------
def write_pretraining_checkpoint(path, **hparams) -> str:
    checkpoint = layout_checkpoint("ours", tiny_backbone_state())
    checkpoint["hyper_parameters"] |= hparams
    torch.save(checkpoint, path)
    return str(path)


@pytest.fixture
def tokenizer_inputs(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes of every cloud batch a ``PointcloudTokenizer`` sees."""
    shapes: list[tuple[int, ...]] = []
    forward = PointcloudTokenizer.forward

    def recording(self, points):
        shapes.append(tuple(points.shape))
        return forward(self, points)

    monkeypatch.setattr(PointcloudTokenizer, "forward", recording)
    return shapes


def probe_config(tmp_path, **model) -> str:
    data = {
        "class_path": "pointjepa.datasets.SyntheticShapesDataModule",
        "init_args": {"num_points": 300, "samples_per_class": 2, "val_samples_per_class": 1,
                      "shapes": ["sphere", "cube"], "batch_size": 4, "drop_last": False},
    }  # fmt: skip
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump({"model": {"svm_validation": {"shapes": data}, **model}}))
    return str(path)


def test_svm_probe_uses_the_checkpoints_subsample_size_by_default(tmp_path, tokenizer_inputs):
    ckpt = write_pretraining_checkpoint(tmp_path / "p.ckpt", transformation_subsample_points=256)
    result = svm.main(["--ckpt", ckpt, "--config", probe_config(tmp_path), "--device", "cpu"])
    assert result["num_points"] == 256
    assert tokenizer_inputs and {shape[1] for shape in tokenizer_inputs} == {256}


def test_svm_probe_num_points_option_overrides_the_checkpoint(tmp_path, tokenizer_inputs):
    ckpt = write_pretraining_checkpoint(tmp_path / "p.ckpt", transformation_subsample_points=256)
    svm.main(["--ckpt", ckpt, "--config", probe_config(tmp_path), "--num_points", "128", "--device", "cpu"])
    assert {shape[1] for shape in tokenizer_inputs} == {128}


def test_svm_probe_takes_the_configs_c_unless_given():
    _, C = svm.svm_validation_from_config(str(ROOT / "configs/demo/pretraining.yaml"))
    assert C == 1.0


def test_svm_probe_c_option_overrides_the_config(tmp_path):
    ckpt = write_pretraining_checkpoint(tmp_path / "p.ckpt", transformation_subsample_points=256)
    config = probe_config(tmp_path, svm_validation_C=0.5)
    rows = svm.main(["--ckpt", ckpt, "--config", config, "--device", "cpu"])["results"]["shapes"]
    assert [row["C"] for row in rows] == [0.5]
    rows = svm.main(["--ckpt", ckpt, "--config", config, "--C", "2.0", "--device", "cpu"])["results"]["shapes"]
    assert [row["C"] for row in rows] == [2.0]


def test_load_encoder_gives_the_pretraining_models_features_on_larger_clouds(tmp_path):
    model = tiny_pretraining().eval()
    save_checkpoint(model, tmp_path / "p.ckpt")
    points = torch.randn(2, 100, 3) * 2 + 1
    encoder = load_encoder(tmp_path / "p.ckpt")
    assert encoder.num_points == 64
    torch.testing.assert_close(encoder(points), model.embed(points))


def test_load_encoder_subsamples_to_a_classifiers_num_points_and_keeps_all_points_of_a_segmenter(tmp_path):
    classifier = tiny_classifier(num_points=48)
    save_checkpoint(classifier, tmp_path / "c.ckpt")
    encoder = load_encoder(tmp_path / "c.ckpt")
    assert [type(t).__name__ for t in encoder.transforms] == ["Subsample", "Center", "UnitSphere"]
    assert encoder.num_points == 48
    segmenter = PointJepaPartSegmentation(**SEGMENTER, num_classes=2, num_seg_classes=4,
                                          category_to_parts={"a": [0, 1], "b": [2, 3]})  # fmt: skip
    save_checkpoint(segmenter, tmp_path / "s.ckpt")
    assert load_encoder(tmp_path / "s.ckpt").num_points is None
    assert load_encoder(tmp_path / "s.ckpt", num_points=32).num_points == 32


def test_load_encoder_without_hyper_parameters_uses_1024_points_centered_on_the_unit_sphere(tmp_path):
    torch.save(layout_checkpoint("point_mae", tiny_backbone_state(qkv_bias=False)), tmp_path / "mae.ckpt")
    encoder = load_encoder(tmp_path / "mae.ckpt", num_groups=8, group_size=4, heads=4)
    assert [type(t).__name__ for t in encoder.transforms] == ["Subsample", "Center", "UnitSphere"]
    assert encoder.num_points == 1024
    custom = load_encoder(tmp_path / "mae.ckpt", num_groups=8, group_size=4, heads=4, transformations=["center"])
    assert [type(t).__name__ for t in custom.transforms] == ["Center"] and custom.num_points is None

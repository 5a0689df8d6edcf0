"""PointJepaClassification: heads and pooling, metrics and images, CLI fits on generated data, voting, few-shot."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pointjepa.cli import PointJepaCLI
from pointjepa.eval import voting
from pointjepa.models.classification import PointJepaClassification
from pointjepa.models.point_jepa import PointJepa
from pointjepa.utils.checkpoint import CheckpointError
from tests.conftest import CLASSIFIER_ARGS, quiet_trainer, save_checkpoint, tiny_classifier, tiny_shapes
from tests.fakedata import write_fewshot, write_modelnet40, write_scanobjectnn

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
FIT_2_BATCHES = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *QUIET]


def cli(args: list[str], run: bool = True) -> PointJepaCLI:
    return PointJepaCLI(
        PointJepaClassification, monitor="val_acc", mode="max", link_num_classes=True, args=args, run=run
    )


# ---- pooling, heads, names --------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["cls_token", "mean", "max", "mean+max", "mean+max+cls_token"])
@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_pooling_and_head_variants_give_logits(pooling, head):
    model = tiny_classifier(cls_head=head, cls_head_pooling=pooling).eval()
    logits = model(model.prepare(torch.randn(3, 100, 3), train=False))
    assert logits.shape == (3, 5)
    assert hasattr(model, "cls_token") == ("cls_token" in pooling) == hasattr(model, "cls_pos")
    widths = {"cls_token": 32, "mean": 32, "max": 32, "mean+max": 64, "mean+max+cls_token": 96}
    first = model.cls_head if head == "linear" else model.cls_head[0]
    assert first.in_features == widths[pooling]


def test_parameter_names_follow_the_original_checkpoints():
    keys = PointJepaClassification(num_classes=15, cls_head_pooling="mean+max+cls_token").state_dict()
    expected = {
        "cls_token": (384,),
        "cls_pos": (384,),
        "cls_head.0.weight": (256, 1152),
        "cls_head.1.running_var": (256,),
        "cls_head.4.weight": (256, 256),
        "cls_head.8.weight": (15, 256),
        "cls_head.8.bias": (15,),
        "encoder.blocks.11.attn.qkv.bias": (1152,),
        "encoder.norm.weight": (384,),
        "positional_encoding.2.weight": (384, 128),
        "tokenizer.embedding.encoder.second_conv.3.weight": (384, 512, 1),
    }
    assert {k: tuple(keys[k].shape) for k in expected} == expected
    assert "cls_head.0.bias" not in keys and not any("acc" in k or "metrics" in k for k in keys)


@pytest.mark.parametrize(("option", "value"), [("cls_head_pooling", "sum"), ("cls_head", "transformer")])
def test_unknown_choices_are_refused(option, value):
    with pytest.raises(ValueError, match=option):
        tiny_classifier(**{option: value})


def test_too_few_points_for_num_points_is_a_clear_error():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="num_points=64"):
        model.prepare(torch.randn(2, 50, 3), train=True)


def test_train_subsampling_is_random_and_eval_subsampling_deterministic():
    model = tiny_classifier()
    points = torch.randn(2, 500, 3)
    assert torch.equal(model.prepare(points, train=False), model.prepare(points, train=False))
    assert not torch.equal(model.prepare(points, train=True), model.prepare(points, train=True))


# ---- optimizer ---------------------------------------------------------------------------------------------
def test_encoder_learning_rate_has_its_own_group_warmed_up_from_the_same_start():
    model = tiny_classifier(encoder_learning_rate=1e-4, learning_rate=1e-3, lr_scheduler_linear_warmup_start_lr=1e-6)
    model._trainer = SimpleNamespace(max_epochs=20)  # configure_optimizers only reads max_epochs
    optimizer = model.configure_optimizers()["optimizer"]
    encoder_group, other_group = optimizer.param_groups
    assert encoder_group["initial_lr"] == 1e-4 and other_group["initial_lr"] == 1e-3
    assert encoder_group["lr"] == pytest.approx(1e-6) and other_group["lr"] == pytest.approx(1e-6)
    assert sum(p.numel() for p in encoder_group["params"]) == sum(p.numel() for p in model.encoder.parameters())
    assert len(encoder_group["params"]) + len(other_group["params"]) == len(list(model.parameters()))


def test_optimizers_without_a_number_of_epochs_raise_one_clear_error():
    model = tiny_classifier()
    model._trainer = SimpleNamespace(max_epochs=None)  # a Trainer before fitting resolves max_epochs
    with pytest.raises(ValueError, match="trainer.max_epochs: the learning-rate schedule needs a number of epochs"):
        model.configure_optimizers()


# ---- metrics, voting, images -------------------------------------------------------------------------------
def test_validation_logs_metrics_vote_and_images(tmp_path, image_logger):
    logger = image_logger
    model = tiny_classifier(vote=True, vote_num=3, log_tsne=True, log_confusion_matrix=True)
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=1,
        logger=logger,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, tiny_shapes(val_samples_per_class=2))
    metrics = trainer.callback_metrics
    assert {"train_acc", "val_acc", "val_top_3_acc", "val_macc", "val_vote_acc", "val_loss"} <= set(metrics)
    assert set(logger.images) == {"val_confusion_matrix", "val_tsne"}
    image = logger.images["val_tsne"][0]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def test_a_single_augmented_vote_equals_the_plain_prediction():
    model = tiny_classifier(vote_num=1, vote_method="augmented").eval()
    points = torch.randn(4, 100, 3)
    with torch.no_grad():
        torch.testing.assert_close(voting.vote(model, points), voting.plain_pass(model, points).softmax(-1))


def test_voting_refuses_a_checkpoint_for_other_classes(tmp_path):
    model = tiny_classifier()
    hparams = {k: v for k, v in model.hparams.items() if k != "num_classes"}  # like the original's checkpoints
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams}, tmp_path / "orig.ckpt")
    assert voting.load_classifier(tmp_path / "orig.ckpt", 5, 2, torch.device("cpu")).hparams.num_classes == 5
    with pytest.raises(CheckpointError, match="num_classes"):
        voting.load_classifier(tmp_path / "orig.ckpt", 8, 2, torch.device("cpu"))


# ---- CLI runs on generated data ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Fine-tune the demo config on synthetic shapes from a demo-sized pretraining checkpoint."""
    root = tmp_path_factory.mktemp("demo")
    pretrained = PointJepa(
        tokenizer_num_groups=32,
        tokenizer_group_size=16,
        encoder_dim=128,
        encoder_depth=4,
        encoder_heads=4,
        predictor_embed_dim=64,
        predictor_depth=1,
        predictor_heads=4,
        target_layers=[3],
    )
    save_checkpoint(pretrained, root / "pre.ckpt")
    data = [
        "--data.init_args.samples_per_class=2",
        "--data.init_args.val_samples_per_class=1",
        "--data.init_args.batch_size=8",
    ]
    run = cli(
        [
            "fit",
            "-c",
            str(CONFIGS / "demo/classification.yaml"),
            f"--model.pretrained_ckpt_path={root / 'pre.ckpt'}",
            f"--trainer.default_root_dir={root}",
            *FIT_2_BATCHES,
            *data,
        ]
    )
    return SimpleNamespace(root=root, cli=run, pretrained=pretrained, data=data)


def test_demo_config_fine_tunes_from_a_pretraining_checkpoint(demo_run):
    assert (demo_run.root / "checkpoints/last.ckpt").is_file()
    assert {"val_acc", "val_vote_acc", "train_acc"} <= set(demo_run.cli.trainer.callback_metrics)
    checkpoint = torch.load(demo_run.root / "checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["hyper_parameters"]["num_classes"] == 8  # linked from the data module


def test_voting_command_prints_plain_and_voted_accuracy(demo_run, capsys):
    args = [
        "--ckpt",
        str(demo_run.root / "checkpoints/last.ckpt"),
        "--config",
        str(CONFIGS / "demo/classification.yaml"),
    ]
    voting.main([*args, "--vote_num=2", "--vote_iterations=2", *demo_run.data])
    out = capsys.readouterr().out
    assert "accuracy without voting" in out and "2/2 vote accuracy" in out
    assert "with voting (2 passes, 2 iterations): best" in out and "±" in out


def test_published_modelnet40_config_fits_on_generated_data(tmp_path):
    data_dir = write_modelnet40(tmp_path, n_train=4, n_test=2, num_points=1100)
    cli(
        [
            "fit",
            "-c",
            str(CONFIGS / "Point-JEPA/classification/modelnet40.yaml"),
            f"--data.init_args.data_dir={data_dir}",
            "--data.init_args.batch_size=2",
            "--trainer.precision=32",
            f"--trainer.default_root_dir={tmp_path}",
            *FIT_2_BATCHES,
        ]
    )
    assert (tmp_path / "checkpoints/last.ckpt").is_file()


@pytest.mark.parametrize(
    ("overlays", "expected"),
    [
        (
            ["modelnet40.yaml", "_pretrained.yaml"],
            dict(max_epochs=150, encoder_unfreeze_epoch=100, loss_label_smoothing=0.1),
        ),
        (["scanobjectnn.yaml"], dict(max_epochs=150, encoder_unfreeze_epoch=100, encoder_dropout=0.1, perturbed=True)),
        (
            ["scanobjectnn.yaml", "_scanobjectnn_obj_bg.yaml"],
            dict(max_epochs=300, encoder_unfreeze_epoch=200, perturbed=False),
        ),
        (
            ["scanobjectnn.yaml", "_scanobjectnn_obj_only.yaml"],
            dict(max_epochs=150, split="main_split_nobg", perturbed=False),
        ),
        (["modelnet_fewshot.yaml"], dict(max_epochs=150, loss_label_smoothing=0.2, way=10, shot=10)),
    ],
)
def test_published_configs_load_with_their_values(tmp_path, overlays, expected):
    data_dir = write_modelnet40(tmp_path)
    configs = [arg for name in overlays for arg in ("-c", str(CONFIGS / "Point-JEPA/classification" / name))]
    run = cli([*configs, f"--data.init_args.data_dir={data_dir}", *QUIET, *CLASSIFIER_ARGS], run=False)
    values = {**run.model.hparams, **vars(run.datamodule), "max_epochs": run.trainer.max_epochs}
    assert {k: values[k] for k in expected} == expected
    assert run.trainer.gradient_clip_val in (None, 10) and run.model.hparams.num_classes == run.datamodule.num_classes


def test_published_scanobjectnn_config_fits_on_generated_data(tmp_path):
    """The full-size PB_T50_RS model (2048 points, 128 groups); the overlays only change data and epochs."""
    data_dir = write_scanobjectnn(tmp_path, perturbed=True, n_train=4, n_test=2, num_points=2100)
    config = str(CONFIGS / "Point-JEPA/classification/scanobjectnn.yaml")
    data = [f"--data.init_args.data_dir={data_dir}", "--data.init_args.batch_size=2"]
    cli(
        ["fit", "-c", config, *data, "--trainer.precision=32", f"--trainer.default_root_dir={tmp_path}", *FIT_2_BATCHES]
    )
    assert (tmp_path / "checkpoints/last.ckpt").is_file()


def test_few_shot_script_runs_the_folds_and_prints_mean_and_std(tmp_path):
    data_dir = write_fewshot(tmp_path, way=5, shot=10, folds=2, num_points=96)
    finished = tmp_path / "runs/5way_10shot/fold1/result.json"  # a fold of an earlier, interrupted sweep
    finished.parent.mkdir(parents=True)
    finished.write_text('{"val_acc": 0.5}')
    script = Path(__file__).resolve().parents[1] / "scripts/classification_few_shot.py"
    args = [
        "--ways",
        "5",
        "--shots",
        "10",
        "--folds",
        "0",
        "1",
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(tmp_path / "runs"),
    ]
    overrides = ["--", *FIT_2_BATCHES, "--trainer.precision=32", "--data.init_args.batch_size=16", *CLASSIFIER_ARGS]
    result = subprocess.run(
        [sys.executable, str(script), *args, *overrides],
        capture_output=True,
        text=True,
        check=False,
        cwd=script.parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fold0 = json.loads((tmp_path / "runs/5way_10shot/fold0/result.json").read_text())["val_acc"]
    scores = np.array([fold0, 0.5]) * 100
    assert f"5-way 10-shot: {scores.mean():.2f} ± {scores.std():.2f}" in result.stdout
    assert result.stdout.count("pointjepa.tasks.classification fit") == 1  # fold 1 was not run again

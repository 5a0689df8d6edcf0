"""A hostile checkpoint (its unpickling runs a shell command that creates a marker file) is refused by every
entry point that reads checkpoints, in one line naming the opt-in, and the command never runs; the opt-ins
load a file that needs them. Built from a real demo pretraining run, which itself loads weights-only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pointjepa
from pointjepa.__main__ import main as pretrain
from pointjepa.api import load_classifier
from pointjepa.cli import NOT_FROM_CHECKPOINT, run_cli
from pointjepa.eval import embed, embedding_cluster_vis, plot_confusion, svm, target_context_vis, voting
from pointjepa.tasks.classification import main as classify
from pointjepa.tasks.part_segmentation import main as segment
from pointjepa.utils.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint
from tests.conftest import CLASSIFIER_ARGS, DEMO_PRETRAINING_ARGS, ROOT, save_checkpoint, tiny_classifier
from tests.fakeckpt import plant_namespace, plant_payload

DEMO = ROOT / "configs/demo"
SHAPES = [
    "--data.class_path=pointjepa.datasets.SyntheticShapesDataModule",
    "--data.init_args.num_points=100",
    "--data.init_args.samples_per_class=1",
    "--data.init_args.val_samples_per_class=1",
    "--data.init_args.shapes=[sphere, cube, cone, torus, disk]",
    "--data.init_args.batch_size=4",
]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def pretraining_args(root: Path, *extra: str, subcommand: str = "fit") -> list[str]:
    """The tiny demo pretraining command line, writing under ``root``."""
    config = str(DEMO / "pretraining.yaml")
    return [subcommand, "-c", config, *DEMO_PRETRAINING_ARGS, f"--trainer.default_root_dir={root}", *extra]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    """A demo pretraining run's last.ckpt and a tiny classifier's checkpoint, each also with the payload."""
    root = tmp_path_factory.mktemp("hostile")
    pretrain(pretraining_args(root / "run", "--trainer.max_epochs=1"))
    pretraining = root / "run/checkpoints/last.ckpt"
    classification = save_checkpoint(tiny_classifier(), root / "classification.ckpt")
    marker = root / "the_command_ran"
    return SimpleNamespace(
        marker=marker,
        pretraining=pretraining,
        classification=classification,
        hostile_pretraining=plant_payload(pretraining, marker, root / "hostile_pretraining.ckpt"),
        hostile_classification=plant_payload(classification, marker, root / "hostile_classification.ckpt"),
    )


@pytest.fixture(autouse=True)
def the_command_never_runs(request):
    yield
    if "files" in request.fixturenames:
        assert not request.getfixturevalue("files").marker.exists()


def one_line_error(main: Callable[[], object], capsys) -> str:
    """Run ``main`` as the commands do (``run_cli``): exit code 1 and the one error line on stderr."""
    with pytest.raises(SystemExit) as info:
        run_cli(main)
    assert info.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in err and len(errors) == 1
    return errors[0]


def help_text(main: Callable[[], object], capsys) -> str:
    """A command's --help output on one line."""
    with pytest.raises(SystemExit):
        main()
    return " ".join(capsys.readouterr().out.split())


def test_our_training_checkpoint_needs_nothing_beyond_weights_only(files):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(files.pretraining) == []
    checkpoint = load_checkpoint(files.pretraining)
    assert {"ExactResume", "MetricsSummary"} <= set(checkpoint["callbacks"])
    assert checkpoint["callbacks"]["ExactResume"]["numpy"][0] == "MT19937"  # random states as tensors and tuples
    assert "fit_loop" in checkpoint["loops"] and checkpoint["hyper_parameters"]["encoder_dim"] == 32


def test_python_apis_refuse_it(files):
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system.*trusted=True"):
        pointjepa.load_encoder(files.hostile_pretraining)
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system.*trusted=True"):
        load_classifier(files.hostile_classification, 5, 2, torch.device("cpu"))


def test_the_svm_command_refuses_it_in_one_line(files, capsys):
    args = ["--ckpt", str(files.hostile_pretraining), "--data", "synthetic", "--device", "cpu"]
    error = one_line_error(lambda: svm.main(args), capsys)
    assert f"{files.hostile_pretraining}: refused" in error and "posix.system" in error
    assert "--trust_checkpoint" in error


@pytest.mark.parametrize(
    "command, checkpoint, args",
    [
        (voting, "hostile_classification", []),
        (plot_confusion, "hostile_classification", ["--output=x.png"]),
        (embedding_cluster_vis, "hostile_pretraining", ["--output=x.png"]),
        (target_context_vis, "hostile_pretraining", ["--output=x.png"]),
    ],
)
def test_the_other_eval_commands_refuse_it(files, command, checkpoint, args):
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system.*--trust_checkpoint"):
        command.main(["--ckpt", str(getattr(files, checkpoint)), *SHAPES, "--device=cpu", *args])


def test_the_embed_command_refuses_it(files, tmp_path):
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).random((256, 3), dtype=np.float32))
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system.*--trust_checkpoint"):
        embed.main(["--ckpt", str(files.hostile_pretraining), "--input", str(tmp_path), "--device=cpu"])


def test_pretraining_refuses_it_as_pretrained_weights_in_one_line(files, tmp_path, capsys):
    args = pretraining_args(tmp_path, *QUIET, f"--model.pretrained_ckpt_path={files.hostile_pretraining}")
    error = one_line_error(lambda: pretrain(args), capsys)
    assert "posix.system" in error and "--model.pretrained_ckpt_trusted true" in error


@pytest.mark.parametrize("task", ["classification", "part_segmentation"])
def test_fine_tuning_refuses_it_as_pretrained_weights(files, tmp_path, task):
    main, extra = (classify, CLASSIFIER_ARGS) if task == "classification" else (segment, [])
    args = ["fit", "-c", str(DEMO / f"{task}.yaml"), *extra, *QUIET, f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(UnsafeCheckpointError, match=r"posix\.system.*--model\.pretrained_ckpt_trusted true"):
        main([*args, f"--model.pretrained_ckpt_path={files.hostile_pretraining}"])


def test_resume_refuses_it_in_one_line(files, tmp_path):
    resume = pretraining_args(tmp_path, f"--ckpt_path={files.hostile_pretraining}")
    result = subprocess.run([sys.executable, "-m", "pointjepa", *resume], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith(f"error: --ckpt_path {files.hostile_pretraining}: refused")
    assert "posix.system" in error and "--weights_only false" in error
    validate = pretraining_args(tmp_path, f"--ckpt_path={files.hostile_pretraining}", subcommand="validate")
    with pytest.raises(CheckpointError, match=r"--ckpt_path .*posix\.system.*--weights_only false"):
        pretrain(validate)


def test_the_command_opt_in_loads_a_file_that_needs_pickle(files, tmp_path, capsys):
    path = plant_namespace(files.classification, tmp_path / "namespace.ckpt")
    args = ["--ckpt", str(path), *SHAPES, "--vote_num=2", "--vote_iterations=1", "--device=cpu"]
    with pytest.raises(UnsafeCheckpointError, match=r"argparse\.Namespace.*--trust_checkpoint"):
        voting.main(args)
    voting.main([*args, "--trust_checkpoint"])
    assert "1/1 vote accuracy" in capsys.readouterr().out
    for command in (svm.main, voting.main, plot_confusion.main, embed.main):
        text = help_text(lambda: command(["--help"]), capsys)  # noqa: B023
        assert "--trust_checkpoint" in text and "runs any code it carries" in text


def test_the_model_opt_in_loads_pretrained_weights_that_need_pickle(files, tmp_path):
    path = plant_namespace(files.pretraining, tmp_path / "namespace.ckpt")
    with pytest.raises(UnsafeCheckpointError, match=r"argparse\.Namespace.*pretrained_ckpt_trusted"):
        tiny_classifier(pretrained_ckpt_path=str(path)).setup("fit")
    model = tiny_classifier(pretrained_ckpt_path=str(path), pretrained_ckpt_trusted=True)
    model.setup("fit")
    student = load_checkpoint(files.pretraining)["state_dict"]["student.norm.weight"]
    assert torch.equal(model.encoder.norm.weight, student)
    assert "pretrained_ckpt_trusted" not in model.hparams  # never saved in a checkpoint


def test_resume_opt_in_resumes_a_file_that_needs_pickle_but_trusts_no_file_it_names(files, tmp_path, capsys):
    """Lightning copies --ckpt_path's hyper-parameters into the model config: not a pretrained file nor its trust."""
    checkpoint = torch.load(plant_namespace(files.pretraining, tmp_path / "resume.ckpt"), weights_only=False)
    checkpoint["hyper_parameters"] |= dict(
        pretrained_ckpt_path=str(files.hostile_pretraining), pretrained_ckpt_trusted=True
    )
    torch.save(checkpoint, tmp_path / "resume.ckpt")
    assert {"pretrained_ckpt_path", "pretrained_ckpt_trusted"} <= set(NOT_FROM_CHECKPOINT)
    resume = f"--ckpt_path={tmp_path / 'resume.ckpt'}"
    args = pretraining_args(tmp_path / "run", *QUIET, "--trainer.max_epochs=2", resume)
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*--weights_only false"):
        pretrain(args)
    pretrain([*args, "--weights_only=false"])
    assert load_checkpoint(tmp_path / "run/checkpoints/last.ckpt")["epoch"] == 1
    text = help_text(lambda: pretrain(["fit", "--help"]), capsys)
    assert "--weights_only false reads --ckpt_path" in text and "runs any code it carries" in text

"""Fast paths against the references of `tests/reference.py`: same groups, same
sequence, same predictions and loss; the Triton FPS kernel against the torch path."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.predictor import TransformerPredictor
from pointjepa.modules.sequencer import SEQUENCE_METHODS, sequence_order
from pointjepa.ops import farthest_point_sample, knn
from pointjepa.ops import fps as fps_module
from tests.conftest import SMALL_PRETRAINING
from tests.reference import (
    plain_loss,
    reference_fps,
    reference_knn,
    reference_sequence_order,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def small_model() -> PointJepa:
    torch.manual_seed(0)
    model = PointJepa(**SMALL_PRETRAINING)
    torch.nn.init.normal_(model.predictor.mask_token, std=0.02)
    return model


def random_clouds(batch: int, num_points: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, num_points, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_reference_fps_known_answer_on_a_line():  # farthest_point_sample's own: tests/test_ops.py
    points = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [10, 0, 0], [4, 0, 0]]])
    assert reference_fps(points, 4).tolist() == [[0, 2, 3, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("given_start", [False, True])
def test_torch_fps_matches_per_sample_greedy_fps(dtype, given_start):
    points = random_clouds(4, 300).to(dtype)
    start = torch.tensor([0, 17, 299, 150]) if given_start else None
    _, idx = farthest_point_sample(points, 40, start_idx=start, backend="torch")
    assert torch.equal(idx, reference_fps(points, 40, start))


def test_torch_fps_matches_reference_with_distance_ties():
    points = (random_clouds(3, 200) * 3).round() / 3  # a coarse grid: duplicates and equal distances
    _, idx = farthest_point_sample(points, 30, start_idx=torch.tensor([5, 0, 199]), backend="torch")
    assert torch.equal(idx, reference_fps(points, 30, torch.tensor([5, 0, 199])))


def test_knn_groups_match_per_sample_reference():
    points = random_clouds(3, 256)
    centers, _ = farthest_point_sample(points, 16)
    assert torch.equal(knn(centers, points, 8, backend="torch")[1], reference_knn(centers, points, 8))


@pytest.mark.parametrize("method", SEQUENCE_METHODS)
def test_vectorised_sequencer_matches_per_sample_reference(method):
    centers = random_clouds(5, 64, seed=3)
    assert torch.equal(sequence_order(centers, method), reference_sequence_order(centers, method))


def test_batched_predictor_matches_per_block_loop():
    torch.manual_seed(0)
    predictor = TransformerPredictor(embed_dim=32, predictor_embed_dim=16, depth=2, num_heads=2).eval()
    torch.nn.init.normal_(predictor.mask_token, std=0.02)
    context, context_centers = torch.randn(3, 10, 32), torch.randn(3, 10, 3)
    target_centers = torch.randn(3, 4, 5, 3)  # (B, M, k, 3)
    with torch.no_grad():
        batched = predictor(context, context_centers, target_centers)
        looped = torch.cat([predictor(context, context_centers, target_centers[:, m : m + 1]) for m in range(4)], 1)
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=0)


def test_eval_jepa_loss_matches_plain_step():
    model = small_model().eval()
    points = random_clouds(4, 512)
    with torch.no_grad():
        predictions, targets = model.jepa_step(model.val_transformations(points), torch.Generator().manual_seed(7))
        optimised = model.loss_func(predictions, targets)
        plain = plain_loss(model, points, torch.Generator().manual_seed(7))
    torch.testing.assert_close(optimised, plain, atol=1e-6, rtol=1e-5)


def test_training_loss_and_gradients_match_plain_step_for_a_fixed_seed():
    model = small_model().train()
    points = random_clouds(4, 512)
    torch.manual_seed(11)  # FPS starts and augmentations come from the global generator
    predictions, targets = model.jepa_step(model.train_transformations(points), torch.Generator().manual_seed(7))
    optimised = model.loss_func(predictions, targets)
    optimised.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(11)
    plain = plain_loss(model, points, torch.Generator().manual_seed(7))
    plain.backward()
    torch.testing.assert_close(optimised, plain, atol=1e-6, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, atol=1e-6, rtol=1e-4, msg=name)


def test_bf16_autocast_loss_is_close_to_fp32():
    model = small_model().eval()
    points = model.val_transformations(random_clouds(4, 512))
    losses = []
    for enabled in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            predictions, targets = model.jepa_step(points, torch.Generator().manual_seed(7))
            losses.append(model.loss_func(predictions.float(), targets.float()))
    assert losses[1].item() == pytest.approx(losses[0].item(), rel=0.05)


def test_auto_fps_stays_on_the_torch_path_for_cpu_tensors(monkeypatch):
    def not_on_cpu(*args, **kwargs):
        raise AssertionError("the Triton kernel was called for a CPU tensor")

    monkeypatch.setattr(fps_module, "_fps_triton", not_on_cpu)
    points = random_clouds(2, 100)
    assert torch.equal(farthest_point_sample(points, 10)[1], reference_fps(points, 10))


TRITON_CHECK = textwrap.dedent(
    """
    import torch
    from pointjepa.ops.fps import _fps_torch
    from pointjepa.ops.fps_triton import fps_triton

    gen = torch.Generator().manual_seed(0)
    cases = [(3, 100, 24), (2, 1000, 32)]
    for batch, num_points, k in cases:
        clouds = [torch.rand(batch, num_points, 3, generator=gen) * 2 - 1]
        clouds.append((clouds[0] * 4).round() / 4)  # many exact distance ties
        clouds.append(clouds[0].half())  # lower precision input, computed in float32
        for points in clouds:
            for start in (None, torch.randint(num_points, (batch,), generator=gen)):
                expected = _fps_torch(points, k, start)
                got = fps_triton(points, k, start)
                assert torch.equal(got, expected), (batch, num_points, k, points.dtype, start)
    print("triton fps ok")
    """
)


def test_triton_fps_kernel_gives_the_torch_indices_in_the_interpreter(tmp_path):
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", TRITON_CHECK], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "triton fps ok" in result.stdout


def test_benchmark_script_runs_on_cpu_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--batch-size", "2", "--num-points", "256", "--subsample-points", "64"]
    args += ["--num-groups", "16", "--steps", "1", "--warmup", "1", "--compare", "--compare-steps", "1"]
    args += ["--config", str(REPO_ROOT / "configs" / "demo" / "pretraining.yaml")]  # a small model
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "pretrain_throughput.py"), *args, "--json", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-up vs plain" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["ms_per_step"] > 0 and figures["samples_per_s"] > 0 and figures["peak_mem_mb"] > 0
    assert list(figures["stages"]) == [
        "transforms", "tokenizer", "sequencer", "teacher/targets", "sampling",
        "student", "predictor", "loss+backward", "optimizer+EMA",
    ]  # fmt: skip
    assert sum(s["share"] for s in figures["stages"].values()) == pytest.approx(1.0)
    assert figures["speedup_vs_plain"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_benchmark_rejects_cuda_without_a_gpu(capsys):
    from benchmarks.pretrain_throughput import main

    with pytest.raises(SystemExit):
        main(["--device", "cuda"])
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err

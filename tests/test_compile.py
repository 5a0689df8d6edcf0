"""`torch_compile`: the compiled pretraining step computes the eager step's loss, and context and
target sizes that change every step do not recompile it.

Most tests trace with dynamo's ``eager`` backend (the graphs are captured and guarded as with inductor,
then run by torch: seconds); ``test_inductor_step_matches_eager`` compiles with inductor itself (about 45 s
of C++ compilation on a 2-core CPU with a cold cache; skipped where no C++ compiler is found).
"""

from __future__ import annotations

import shutil

import pytest
import torch
import torch._dynamo

from pointjepa.models.point_jepa import PointJepa
from pointjepa.modules.compile import compile_step_modules
from tests.conftest import PRETRAINING, SMALL_PRETRAINING


def eager_and_compiled(options: dict, backend: str) -> tuple[PointJepa, PointJepa]:
    """Two train-mode models with the same weights, the second with its step modules compiled by ``backend``
    (dynamo's caches reset first, global seed 0)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = PointJepa(**options).train()
    model = PointJepa(**options).train()
    compile_step_modules(model.student, model.teacher.ema_model, model.predictor, model.tokenizer.embedding, backend)
    model.load_state_dict(eager.state_dict())
    return eager, model


def train_steps(model: PointJepa, steps: int, seed: int = 0) -> tuple[list[float], list[int]]:
    """``steps`` AdamW steps with EMA on one batch -> the losses and the context size of each step."""
    torch.manual_seed(seed)
    points = torch.rand(4, 512, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator, sizes, losses = torch.Generator().manual_seed(seed), [], []
    hook = model.student.register_forward_pre_hook(lambda _, inputs: sizes.append(inputs[0].shape[1]))
    for _ in range(steps):
        predictions, targets = model.jepa_step(model.train_transformations(points), generator)
        loss = model.loss_func(predictions, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.teacher.update(model.student)
        losses.append(loss.item())
    hook.remove()
    return losses, sizes


def student_graphs() -> int:
    """Graphs dynamo has compiled so far (all frames)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def test_compiled_step_gives_the_eager_losses_without_recompiling_as_sizes_change():
    eager, model = eager_and_compiled(SMALL_PRETRAINING, backend="eager")
    expected, expected_sizes = train_steps(eager, 3)
    got, sizes = train_steps(model, 3)
    assert sizes == expected_sizes
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    graphs_after_warm_up = student_graphs()
    _, later_sizes = train_steps(model, 6, seed=1)
    assert set(later_sizes) - set(sizes), "the test needs context sizes not seen in the first steps"
    assert student_graphs() == graphs_after_warm_up  # new sizes, no new graph


def test_compiled_step_with_dropout_and_drop_path_gives_the_eager_losses():
    """Dropout masks come from the same generator in the same order when the graphs run in torch."""
    options = dict(PRETRAINING, encoder_dropout=0.1, predictor_drop_out=0.1, predictor_drop_path_rate=0.1)
    eager, model = eager_and_compiled(options, backend="eager")
    torch.testing.assert_close(train_steps(model, 3)[0], train_steps(eager, 3)[0], rtol=1e-5, atol=1e-6)


def test_torch_compile_option_compiles_the_four_modules_and_keeps_the_parameter_names():
    plain = PointJepa(**PRETRAINING)
    model = PointJepa(**PRETRAINING, torch_compile=True)
    assert model.hparams.torch_compile is True
    for name in ("student", "predictor", "tokenizer.embedding", "teacher.ema_model"):
        module = model.get_submodule(name)
        assert "forward" in vars(module), name  # the instance's compiled forward, not the class's
        assert "forward" not in vars(plain.get_submodule(name)), name
    assert list(model.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("c++", "g++", "clang++")), reason="inductor needs a C++ compiler on the CPU"
)
def test_inductor_step_matches_eager():
    """Inductor (generated C++ kernels, its own fused reductions): the same losses to float tolerance over
    steps of varying sizes, on a dropout-free model (inductor draws dropout masks with its own generator)."""
    eager, model = eager_and_compiled(SMALL_PRETRAINING, backend="inductor")
    expected, expected_sizes = train_steps(eager, 4)
    got, sizes = train_steps(model, 4)
    assert sizes == expected_sizes and len(set(sizes)) >= 2
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)

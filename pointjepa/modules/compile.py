"""`torch.compile` of a module's forward, in place, for sizes that change from call to call."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config as fx_config
from torch import nn


def compile_forward(module: nn.Module, dynamic: bool | None = None, backend: str | Callable = "inductor") -> None:
    """Replace ``module.forward`` by a `torch.compile` of it (inductor: C++ on the CPU, Triton on GPUs).

    Only ``forward`` is compiled, so parameter names, checkpoints and forward hooks stay as they
    are (hooks run outside the compiled code), and a deep copy of the module calls the copy's own
    weights. ``dynamic=True`` traces every size as a symbol: one graph for all context and target
    sizes. Sizes are not "duck-shaped" (two inputs that happen to have the same length in the first
    call are not assumed equal), which would otherwise recompile when they first differ.
    """
    compiled = torch.compile(type(module).forward, dynamic=dynamic, backend=backend)

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        # read when a graph is traced, not when it runs; torch adds ``patch`` to its config modules at import
        with fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
            return compiled(self, *args, **kwargs)

    module.forward = types.MethodType(forward, module)


def compile_step_modules(
    student: nn.Module,
    teacher: nn.Module,
    predictor: nn.Module,
    pointnet: nn.Module,
    backend: str | Callable = "inductor",
) -> None:
    """`compile_forward` the modules of a pretraining step: the student and the predictor with dynamic sizes
    (context and target sizes change every step: one graph for all of them), the teacher and the
    mini-PointNet (all tokens, all groups) specialised to their sizes until one changes."""
    compile_forward(student, dynamic=True, backend=backend)
    compile_forward(predictor, dynamic=True, backend=backend)
    compile_forward(teacher, backend=backend)
    compile_forward(pointnet, backend=backend)

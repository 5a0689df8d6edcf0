"""Exponential moving average teacher with a linear decay schedule."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

#: Updates 0 and 1 copy the student into the teacher (as the original's EMA with update_after_step=0:
#: its warm-up branch, then its first-update initialisation); averaging starts at update 2.
COPY_UPDATES = 2


def ema_decay(step: int, tau_min: float, tau_max: float, tau_steps: float) -> float:
    """Decay of update number ``step`` (0-based): 0.0 at step 0, then linear from ``tau_min`` (step 0)
    to ``tau_max`` (step ``tau_steps``), then ``tau_max``; kept within [tau_min, tau_max]."""
    if step <= 0:
        return 0.0
    value = tau_min + (tau_max - tau_min) * step / tau_steps if step < tau_steps else tau_max
    return min(max(value, tau_min), tau_max)


class EMA(nn.Module):
    """Holds ``ema_model``, a frozen copy of the online model, and the ``step`` counter (shape (1,)).

    ``update(online)`` is called once per optimizer step. Updates 0 and 1 copy the online model;
    from update 2 on ``ema <- tau * ema + (1 - tau) * online`` with ``tau = ema_decay(step)``, for
    parameters and floating-point buffers. The teacher always runs in eval mode. ``tau_steps`` is
    set by the training loop.

    Args:
        model: the online (student) model to copy.
        tau_min: start of the linear decay ramp (step 0).
        tau_max: decay from ``tau_steps`` on.
        tau_steps: length of the linear ramp in optimizer steps.
    """

    step: torch.Tensor
    _step_host: int | None

    def __init__(
        self, model: nn.Module, tau_min: float = 0.9995, tau_max: float = 0.99999, tau_steps: float = 0
    ) -> None:
        super().__init__()
        if not 0.0 <= tau_min <= 1.0 or not 0.0 <= tau_max <= 1.0:
            raise ValueError(f"ema_tau_min / ema_tau_max: expected values in [0, 1], got {tau_min} and {tau_max}")
        self.ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("step", torch.zeros(1, dtype=torch.long))
        self.tau_min = tau_min
        self.tau_max = tau_max
        self.tau_steps = tau_steps

    def train(self, mode: bool = True) -> EMA:
        super().train(mode)
        self.ema_model.eval()
        return self

    def current_decay(self) -> float:
        """Decay the next update will use (host-side; the step counter mirrors on the host)."""
        return ema_decay(self._host_step(), self.tau_min, self.tau_max, self.tau_steps)

    def _host_step(self) -> int:
        host = getattr(self, "_step_host", None)
        if host is None:
            host = int(self.step)  # once after construction or a checkpoint load
            self._step_host = host
        return host

    def _paired_tensors(self, online: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Teacher and online parameters and floating-point buffers, in matching order."""
        ema = [*self.ema_model.parameters(), *self.ema_model.buffers()]
        src = [*online.parameters(), *online.buffers()]
        if [t.shape for t in ema] != [t.shape for t in src]:
            raise RuntimeError("EMA: the online model's parameters no longer match the teacher's")
        pairs = [(e, s.detach().to(e.dtype)) for e, s in zip(ema, src) if e.is_floating_point()]
        return [e for e, _ in pairs], [s for _, s in pairs]

    @torch.no_grad()
    def update(self, online: nn.Module) -> float:
        """Copy (updates 0 and 1) or blend ``online`` into the teacher; returns the decay (0.0 at update 0)."""
        step = self._host_step()
        tau = ema_decay(step, self.tau_min, self.tau_max, self.tau_steps)
        ema, src = self._paired_tensors(online)
        if step < COPY_UPDATES:
            torch._foreach_copy_(ema, src)
        else:
            torch._foreach_lerp_(ema, src, 1.0 - tau)
        self.step += 1
        self._step_host = step + 1
        return tau

    @torch.no_grad()
    def reset(self, online: nn.Module) -> None:
        """Restart from ``online``: the teacher becomes a copy of it and the step counter 0."""
        self.ema_model.load_state_dict(online.state_dict())
        self.step.zero_()
        self._step_host = 0

    def _load_from_state_dict(
        self, state_dict: dict[str, torch.Tensor], prefix: str, *args: object, **kwargs: object
    ) -> None:
        step = state_dict.get(prefix + "step")
        if step is not None and step.dim() == 0:  # checkpoints written with a 0-d counter
            state_dict[prefix + "step"] = step.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._step_host = None

    def forward(self, *args: object, **kwargs: object) -> Any:
        """Whatever ``ema_model`` returns for these arguments."""
        return self.ema_model(*args, **kwargs)

"""Exponential moving average teacher with a linear decay schedule."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(step: int, tau_min: float, tau_max: float, tau_steps: float) -> float:
    """Decay at ``step``: linear from ``tau_min`` to ``tau_max`` over ``tau_steps``, then ``tau_max``."""
    if tau_steps <= 0:
        return tau_max
    return tau_min + (tau_max - tau_min) * min(step / tau_steps, 1.0)


class EMA(nn.Module):
    """Holds ``ema_model``, a frozen copy of the online model, and the ``step`` counter.

    ``update(online)`` does ``ema <- tau * ema + (1 - tau) * online`` for parameters and copies
    buffers. The teacher always runs in eval mode. ``tau_steps`` is set by the training loop.

    Args:
        model: the online (student) model to copy.
        tau_min: decay at step 0.
        tau_max: decay from ``tau_steps`` on.
        tau_steps: length of the linear ramp in optimizer steps.
    """

    def __init__(self, model: nn.Module, tau_min: float = 0.9995, tau_max: float = 0.99999, tau_steps: float = 0) -> None:
        super().__init__()
        if not 0.0 <= tau_min <= 1.0 or not 0.0 <= tau_max <= 1.0:
            raise ValueError(f"ema_tau_min / ema_tau_max: expected values in [0, 1], got {tau_min} and {tau_max}")
        self.ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.tau_min = tau_min
        self.tau_max = tau_max
        self.tau_steps = tau_steps

    def train(self, mode: bool = True) -> "EMA":
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

    @torch.no_grad()
    def update(self, online: nn.Module) -> float:
        """Blend ``online`` into the teacher; returns the decay used."""
        tau = self.current_decay()
        ema_params = list(self.ema_model.parameters())
        online_params = [p.detach() for p in online.parameters()]
        if len(ema_params) != len(online_params):
            raise RuntimeError("EMA: the online model's parameters no longer match the teacher's")
        torch._foreach_lerp_(ema_params, [p.to(e.dtype) for p, e in zip(online_params, ema_params)], 1.0 - tau)
        for ema_buffer, buffer in zip(self.ema_model.buffers(), online.buffers()):
            ema_buffer.copy_(buffer)
        self.step += 1
        self._step_host = self._host_step() + 1
        return tau

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._step_host = None

    def forward(self, *args, **kwargs):
        return self.ema_model(*args, **kwargs)

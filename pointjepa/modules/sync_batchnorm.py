"""Synchronised batch norm for any process-group backend (gloo on CPU included) and its Lightning plugin.

torch's ``SyncBatchNorm`` runs on GPUs only; this one all-reduces per-channel sums, sums of squares and
counts with a differentiable all-reduce, so ``--trainer.sync_batchnorm true`` also works for CPU DDP.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.plugins.layer_sync import TorchSyncBatchNorm
from torch import nn
from torch.autograd.function import FunctionCtx
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of each input is the sum of the output gradients of all processes."""

    @staticmethod
    def forward(ctx: FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class ProcessGroupBatchNorm(_BatchNorm):
    """Batch norm over the whole global batch: in training with several processes the statistics of
    every process are combined; otherwise it is plain batch norm. Parameters and buffers are
    ``BatchNorm``'s, so state dicts are interchangeable. Input (N, C) or (N, C, *)."""

    _original_class: type[_BatchNorm]  # the batch norm it replaced, restored by ``revert``

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return F.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias,
                self.training or not self.track_running_stats, self.momentum or 0.0, self.eps,
            )  # fmt: skip
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        x = input.float()
        local = torch.cat([x.sum(dims), x.square().sum(dims), x.new_full((1,), x.numel() / channels)])
        total = _AllReduceSum.apply(local)
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean.square()).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * count / (count - 1).clamp_min(1))
        shape = [1, channels] + [1] * (input.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        if self.num_batches_tracked is None or self.running_mean is None or self.running_var is None:
            return  # track_running_stats=False: no statistics kept
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased_var.to(self.running_var.dtype), momentum)


def _swap_batchnorm(module: nn.Module, to_sync: bool) -> nn.Module:
    """Replace every (non-synchronised) batch norm by ``ProcessGroupBatchNorm``, or back, sharing tensors."""
    if to_sync and isinstance(module, _BatchNorm) and not isinstance(module, (ProcessGroupBatchNorm, nn.SyncBatchNorm)):
        synced = ProcessGroupBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        synced._original_class = type(module)
        new: nn.Module = synced
    elif not to_sync and isinstance(module, ProcessGroupBatchNorm):
        new = getattr(module, "_original_class", nn.BatchNorm1d)(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
    else:
        for name, child in module.named_children():
            module.add_module(name, _swap_batchnorm(child, to_sync))
        return module
    new.load_state_dict(module.state_dict())
    new.train(module.training)
    return new


class PortableSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning's ``sync_batchnorm`` plugin with ``ProcessGroupBatchNorm``: works on CPU (gloo) and GPU."""

    def apply(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, to_sync=True)

    def revert(self, model: nn.Module) -> nn.Module:
        return _swap_batchnorm(model, to_sync=False)

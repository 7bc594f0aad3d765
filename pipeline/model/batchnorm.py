"""Batch norm for regular fields: e2cnn's ``InnerBatchNorm`` statistics through ``BatchNorm2d``.

``InnerBatchNorm`` normalises each field with one mean and variance shared by its N group
channels (which keeps equivariance), using ``BatchNorm3d`` on a (B, F, N, H, W) view.  On
CUDA with bf16 that 5-D kernel took 56 % of a training step's GPU time (H200, 64x64,
batch 128; benchmarks/gpu.py).  Viewing the same data as (B, F, N*H, W) gives identical
statistics (per field, over B, N, H, W) through the much faster 2-D kernel.

Data-parallel training (DDP): :func:`sync_batch_norm` makes every :class:`FieldBatchNorm2d`
of a model take its training statistics over the global batch, on CPU (gloo) and CUDA
(NCCL) alike: the per-field sums, then the sums of squared deviations from the global mean,
are all-reduced (differentiably: each rank's share gets the sum of the ranks' gradients of the
total, as in ``nn.SyncBatchNorm``), and every rank normalises with, and updates its running statistics from, the
same numbers a single process would get from the whole batch.  Plain ``nn.BatchNorm2d`` layers (the
baselines') become :class:`SyncedBatchNorm2d`, the same reductions with a group of one channel.
(``nn.SyncBatchNorm`` cannot stand in: this module computes its statistics itself, and
SyncBatchNorm needs a GPU.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from e2cnn import nn as enn

__all__ = ["RegularBatchNorm", "FieldBatchNorm2d", "SyncedBatchNorm2d", "var_mean_batch_norm", "sync_batch_norm"]


class FieldBatchNorm2d(nn.Module):
    """Batch norm with one statistic per group of ``group_size`` consecutive channels.

    (B, F*N, H, W) is viewed as (B, F, N*H, W) and normalised per F (``group_size=1`` is plain
    BatchNorm2d).  Parameters and running statistics live in an ``nn.BatchNorm2d(F)`` so the
    state dict is the standard one.  On CUDA the statistics are computed with ``var_mean`` in
    float32: PyTorch's native batch-norm kernels parallelise over channels only, and with a few
    channels of many pixels (4 fields x 8 x 64 x 64 x batch) they left the GPU idle (bf16
    backward was 56 % of a step on an H200).  On CPU the native kernel is used.

    After :func:`sync_batch_norm` (``synchronised``, ``process_group``), training-mode statistics
    are those of the batch over every process of the group (see the module docstring).
    """

    def __init__(self, num_groups: int, group_size: int = 1, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_groups, eps=eps, momentum=momentum)
        self.group_size = group_size
        self.process_group: Any = None  # None: this process's batch only
        self.synchronised = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = c // self.group_size
        if self.synchronised and self.training and _world_size(self.process_group) > 1:
            return var_mean_batch_norm(x, self.bn, self.group_size, True, sync=True, process_group=self.process_group)
        if not x.is_cuda:
            return self.bn(x.reshape(b, f, self.group_size * h, w)).reshape(b, c, h, w)  # (B, F, N*H, W)
        return var_mean_batch_norm(x, self.bn, self.group_size, self.training)


def _world_size(group: Any) -> int:
    import torch.distributed as dist

    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are those of every process of ``process_group``.

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm2d`` (a checkpoint does not
    know it was trained synchronised); with one process it is ``nn.BatchNorm2d``.
    """

    process_group: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and _world_size(self.process_group) > 1:
            return var_mean_batch_norm(x, self, 1, True, sync=True, process_group=self.process_group)
        return super().forward(x)


def sync_batch_norm(model: nn.Module, process_group: Any = None) -> nn.Module:
    """Make every batch norm in ``model`` take its training statistics over ``process_group``.

    :class:`FieldBatchNorm2d` is switched to its synchronised path; a plain ``nn.BatchNorm2d``
    (affine, with running statistics) becomes a :class:`SyncedBatchNorm2d` holding the same
    parameters and buffers.  ``process_group``: None is the default (world) group.  In place
    (call it before the optimiser is built); returns ``model``.
    """
    owned = {id(m.bn) for m in model.modules() if isinstance(m, FieldBatchNorm2d)}
    for m in model.modules():
        if isinstance(m, FieldBatchNorm2d):
            m.process_group, m.synchronised = process_group, True
        for name, child in m.named_children():
            if type(child) is nn.BatchNorm2d and id(child) not in owned:
                if not (child.affine and child.track_running_stats):
                    raise ValueError(f"sync_batch_norm: {name} needs affine=True and running statistics")
                synced = SyncedBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
                synced.load_state_dict(child.state_dict())
                synced.to(child.weight.device).train(child.training)
                synced.process_group = process_group
                setattr(m, name, synced)
    return model


def _global_var_mean(x3: torch.Tensor, process_group: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(biased variance, mean, count) per field of (B, F, M) over every process of the group, float32.

    Two all-reduces: the sums and counts give the global mean exactly; the sums of squared
    deviations from it then give the variance without the cancellation of E[x^2] - mean^2.
    """
    xf = x3.float()
    local = torch.cat([xf.sum(dim=(0, 2)), xf.new_tensor([float(x3.shape[0] * x3.shape[2])])])
    total = _AllReduceSum.apply(local, process_group)
    n = total[-1]
    mean = total[:-1] / n  # (F,)
    sq = ((xf - mean[None, :, None]) ** 2).sum(dim=(0, 2))
    var = _AllReduceSum.apply(sq, process_group) / n
    return var, mean, n  # n stays a tensor: no wait for the device


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes of a group, differentiable: the gradient of every process's share is
    the sum of the processes' gradients of the total (each process's loss depends on the total)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Any) -> torch.Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        import torch.distributed as dist

        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None


def var_mean_batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d, group_size: int, training: bool, *,
                        sync: bool = False, process_group: Any = None) -> torch.Tensor:
    """Grouped batch norm by explicit float32 reductions (the CUDA path of :class:`FieldBatchNorm2d`).

    Same results and running-statistic updates as ``bn`` on the (B, F, N*H, W) view.  With
    ``sync`` (training only) the statistics are those of the batch of every process in
    ``process_group`` (None: the default group).
    """
    b, c, h, w = x.shape
    x3 = x.reshape(b, c // group_size, -1)  # (B, F, N*H*W)
    if training:
        if sync:
            var, mean, n = _global_var_mean(x3, process_group)
        else:
            var, mean = torch.var_mean(x3.float(), dim=(0, 2), unbiased=False)
            n = x3.shape[0] * x3.shape[2]
        with torch.no_grad():
            bn.running_mean.lerp_(mean.detach(), bn.momentum)
            unbiased = n / (n - 1) if torch.is_tensor(n) else n / max(n - 1, 1)  # a global n is > 1
            bn.running_var.lerp_(var.detach() * unbiased, bn.momentum)
            bn.num_batches_tracked += 1
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight * torch.rsqrt(var + bn.eps)  # (F,)
    shift = bn.bias - mean * scale
    y = x3 * scale[None, :, None].to(x.dtype) + shift[None, :, None].to(x.dtype)
    return y.reshape(b, c, h, w)


class RegularBatchNorm(enn.EquivariantModule):
    """Equivariant batch norm for a FieldType made only of fields of one size N (regular fields)."""

    def __init__(self, in_type: enn.FieldType, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        sizes = {r.size for r in in_type.representations}
        if len(sizes) != 1:
            raise ValueError("RegularBatchNorm needs fields of a single size")
        self.in_type = self.out_type = in_type
        self.group_size = sizes.pop()
        self.norm = FieldBatchNorm2d(len(in_type), self.group_size, eps=eps, momentum=momentum)

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        assert input.type == self.in_type
        return enn.GeometricTensor(self.norm(input.tensor), self.out_type)

    def evaluate_output_shape(self, input_shape):
        return input_shape

    def export(self) -> nn.Module:
        """The same computation in plain torch (eval mode)."""
        self.eval()
        return self.norm

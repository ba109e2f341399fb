"""Data-parallel training over ``torch.distributed`` with the result of one process.

Peers that train ReID models with plain DDP lose mAP on 2-4 GPUs because each process
normalises with its own batch statistics, mines triplets in its own part of the batch
and averages losses over its own images. Here one step on ``W`` processes with a global
batch ``B`` (``B / W`` images each, whole identities: see
:class:`~reidlab.data.sampler.RandomIdentitySampler`'s ``split="identities"``) is one
step on one process with batch ``B``:

* :func:`convert_sync_bn`: batch norm over the global batch (``nn.SyncBatchNorm`` on
  CUDA; :class:`GlobalBatchNorm`, the same statistics through differentiable
  all-reduces, where SyncBatchNorm does not run, e.g. gloo on CPU);
* :class:`DistributedTask`: the model's outputs and labels gathered from every process
  (:func:`gather`, gradients flowing back to each process's own rows), so every loss term
  (softmax, hard-mining triplet, centres) is computed on the global batch, the same
  number on every process;
* the model wrapped in ``DistributedDataParallel``, which averages its gradients. The
  gather's backward sums each row's gradient over the processes (each computed the same
  loss), so that average is exactly the one-process gradient.

Loss parameters outside the model (centres, learned weights) see the gathered batch and
get the same gradient on every process without any reduction.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist
from torch import nn

from reidlab.engine.task import Batch, ReIDTask, TaskOutput
from reidlab.models.reid import ReIDOutput

log = logging.getLogger("reidlab")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device_type: str) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``,
    ``MASTER_ADDR``...): NCCL on CUDA, gloo on CPU; one process without them.

    Returns:
        ``(rank, world_size)``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        log.info("process %d of %d (%s)", dist.get_rank(), size, backend)
    return world()


class _Gather(torch.autograd.Function):
    """All-gather along dim 0; backward: each process's rows get the sum over processes
    of their gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, size = world()
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = (rank * x.shape[0], (rank + 1) * x.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows[0] : ctx.rows[1]]


class _AllReduce(torch.autograd.Function):
    """Sum over processes; backward: the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def gather(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on each of W processes -> (W n, ...) in rank order, the same on every
    process; differentiable (each process's gradient reaches its own rows). Every process
    must pass the same ``n``. Without a process group: ``x``."""
    if world()[1] == 1:
        return x
    if x.requires_grad:
        return _Gather.apply(x)
    parts = [torch.empty_like(x) for _ in range(world()[1])]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over processes (``x`` itself in one process)."""
    return x if world()[1] == 1 else _AllReduce.apply(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch.

    The per-channel mean and biased variance for normalising, and the unbiased variance
    for the running estimate (momentum as ``nn.BatchNorm``), over the images of every
    process, through differentiable all-reduces of sums (two passes: the mean, then the
    squared deviations, for the same accuracy as one process). Same parameters, buffers
    and state-dict keys as the ``BatchNorm1d``/``2d`` it replaces; eval uses the running
    statistics as they do.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C, ...) input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)  # running statistics, or one process's batch
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        n = all_reduce_sum(count)
        mean = all_reduce_sum(x.sum(dims)) / n  # (C,)
        var = all_reduce_sum(((x - mean.view(shape)) ** 2).sum(dims)) / n
        if self.track_running_stats:
            assert self.running_mean is not None and self.running_var is not None
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else (
                    1.0 / float(self.num_batches_tracked.item()))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_bn(module: nn.Module, device_type: str) -> nn.Module:
    """Every batch norm of ``module`` over the global batch: PyTorch's ``SyncBatchNorm``
    on CUDA, :class:`GlobalBatchNorm` elsewhere; weights and running statistics carried
    over, state-dict keys unchanged. The modules are new: build the optimisers after."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                              module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        tensors = list(module.state_dict().values())
        return new.to(tensors[0].device) if tensors else new
    for name, child in module.named_children():
        setattr(module, name, _convert(child))
    return module


class DistributedTask(ReIDTask):
    """A :class:`~reidlab.engine.task.ReIDTask` whose objective sees the global batch.

    Shares the model, objective and teacher of ``task`` (so checkpoints of ``task.model``
    are unchanged); the model runs under ``DistributedDataParallel`` on this process's
    images, then its outputs and the labels are gathered and the objective runs on the
    gathered batch: the loss, each term and the accuracy are those of one process with
    the global batch.
    """

    def __init__(self, task: ReIDTask, device: torch.device) -> None:
        super().__init__(task.model, task.objective, task.teacher)
        ids = [device.index] if device.type == "cuda" else None
        # the global batch norm keeps the buffers equal on every process already
        self.ddp = nn.parallel.DistributedDataParallel(task.model, device_ids=ids)

    def forward(self, batch: Batch) -> TaskOutput:
        pids = batch.targets["pid"]
        local = self.ddp(batch.images, pids)
        output = ReIDOutput(gather(local.global_feat), gather(local.feat),
                            gather(local.logits) if local.logits is not None else None)
        all_pids = gather(pids)
        loss, terms = self.objective(output, all_pids)
        logs = {}
        if output.logits is not None:
            logs["acc"] = (output.logits.argmax(1) == all_pids).float().mean().item()
        if self.objective.weighting is not None:
            logs.update({f"s_{k}": v for k, v in self.objective.weighting.values().items()})
        return TaskOutput(loss, terms, output, logs)


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
get the same gradient on every process without any reduction. :func:`distribute` is what
:func:`~reidlab.engine.trainer.fit` calls for every mode; a task with a forward of its own
(SSG's part task) is trained under plain DDP instead (each process's loss on its share,
the gradients averaged), its batch norm still global.

The process group and the collectives are in :mod:`reidlab.engine.collectives`.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from reidlab.engine.collectives import all_reduce_sum, gather, world
from reidlab.engine.task import Batch, ReIDTask, TaskOutput
from reidlab.losses.distill import with_teacher
from reidlab.models.reid import ReIDOutput

log = logging.getLogger("reidlab")


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
    on CUDA, :class:`GlobalBatchNorm` elsewhere (in place below the top module). The new
    modules hold the same parameter and buffer tensors, so optimisers built before keep
    stepping them; state-dict keys are unchanged."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
            module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum,
                              module.affine, module.track_running_stats)
        names = ["weight", "bias"] if module.affine else []
        for name in names:
            setattr(new, name, getattr(module, name))
        if module.track_running_stats:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(new, name, getattr(module, name))
        new.train(module.training)
        return new
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
        self.ddp = _ddp(task.model, device)

    def forward(self, batch: Batch) -> TaskOutput:
        pids = batch.targets["pid"]
        local = self.ddp(batch.images, pids)
        output = _gathered(local)
        if self.teacher is not None:  # the distillation terms read its outputs
            with torch.no_grad():
                output = with_teacher(output, _gathered(self.teacher(batch.images)))
        all_pids = gather(pids)
        loss, terms = self.objective(output, all_pids)
        loss = loss + _nothing_from(local)
        logs = {}
        if output.logits is not None:
            logs["acc"] = (output.logits.argmax(1) == all_pids).float().mean().item()
        if self.objective.weighting is not None:
            logs.update({f"s_{k}": v for k, v in self.objective.weighting.values().items()})
        return TaskOutput(loss, terms, output, logs)



class _WholeTaskDDP(ReIDTask):
    """A task with a forward of its own (SSG's part task), whose outputs this module cannot
    gather: the whole task under ``DistributedDataParallel``, each process's loss on its
    own share, the gradients (model and objective) averaged."""

    def __init__(self, task: ReIDTask, device: torch.device) -> None:
        super().__init__(task.model, task.objective, task.teacher)
        self.task = task
        self.ddp = _ddp(task, device)

    def forward(self, batch: Batch) -> TaskOutput:
        out = self.ddp(batch)
        out.loss = out.loss + _nothing_from(out.output)
        return out

    def log_keys(self) -> list[str]:
        return self.task.log_keys()


def _ddp(module: nn.Module, device: torch.device) -> nn.parallel.DistributedDataParallel:
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _nothing_from(out: ReIDOutput) -> torch.Tensor:
    """Zero, through every output of the model: DDP waits for a gradient of every
    parameter, and one that the loss never reads (the classifier and the neck under a
    triplet-only loss) gets a zero gradient this way instead of none. (Weight decay then
    still shrinks it, which one process would not do; such parameters make no feature.)"""
    parts = [out.global_feat, out.feat, *([out.logits] if out.logits is not None else [])]
    return sum((t.sum() * 0.0 for t in parts), torch.zeros((), device=out.feat.device))


def _gathered(out: ReIDOutput) -> ReIDOutput:
    return ReIDOutput(gather(out.global_feat), gather(out.feat),
                      gather(out.logits) if out.logits is not None else None)


def distribute(task: ReIDTask, device: torch.device, sync_bn: bool = True) -> ReIDTask:
    """What the training step runs when there are several processes: ``task`` with its
    batch norms over the global batch (``sync_bn``, :func:`convert_sync_bn`, in place) and
    its loss on the gathered batch (:class:`DistributedTask`), or, for a task with a
    forward of its own, the whole task under DDP. ``task`` itself keeps the weights and is
    what checkpoints and validation read."""
    if sync_bn:
        convert_sync_bn(task.model, device.type)
    if type(task).forward is ReIDTask.forward:
        return DistributedTask(task, device)
    if world()[0] == 0:
        log.warning("%s has a forward of its own: trained under plain DDP (each process's "
                    "loss on its own share of the batch, gradients averaged)",
                    type(task).__name__)
    return _WholeTaskDDP(task, device)

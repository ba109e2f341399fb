"""The process group of a ``torchrun`` launch and the collectives the engine uses.

Every function here also works without a process group (one process), where it is the
identity or a plain call: :func:`world` is then ``(0, 1)``. :func:`on_rank_zero` runs a
step only rank 0 takes (the pre-flight checks that create the run folder) and sends its
result, or its failure, to every process; :func:`gather` is the differentiable all-gather
of :mod:`reidlab.engine.distributed`; :func:`gather_rows` gathers row blocks of different
sizes for the sharded evaluation of :class:`~reidlab.engine.validator.Validator`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger("reidlab")
T = TypeVar("T")


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
        # The others wait while rank 0 alone checks the run (the first image check of a
        # large dataset opens every image once: minutes for MSMT17), past NCCL's default
        # 10 minutes.
        dist.init_process_group(backend, timeout=timedelta(minutes=60))
        log.info("process %d of %d (%s)", dist.get_rank(), size, backend)
    return world()


def leave(together: bool = False) -> None:
    """Leave the process group, if this process joined one. ``together`` (a command that
    ended normally on every rank): wait at a barrier first, so that no rank tears its gloo
    threads down while another still exchanges with it (a rank then aborted at exit with
    "terminate called without an active exception", seen once in CI)."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


class RankZeroFailed(ValueError):
    """Raised by the other processes when a step that only rank 0 takes failed there."""


def on_rank_zero(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 only, its result (picklable) sent to every process.

    Raises:
        RankZeroFailed: on the other ranks, when ``fn`` raised on rank 0 (which re-raises
            its own error), naming it.
    """
    rank, size = world()
    if size == 1:
        return fn()
    box: list[Any] = [None]
    if rank == 0:
        try:
            box[0] = (True, fn())
        except BaseException as err:
            box[0] = (False, f"{type(err).__name__}: {err}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    ok, value = box[0]
    if not ok:
        raise RankZeroFailed(f"rank 0 failed: {value}")
    return value


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Rank 0 runs the block, then the other ranks do (a file rank 0 writes that the
    others then read instead of writing it at the same time)."""
    rank, size = world()
    if size > 1 and rank > 0:
        dist.barrier()
    yield
    if size > 1 and rank == 0:
        dist.barrier()


def _comm_device() -> torch.device:
    """Where a tensor must be for the process group's collectives."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree_max(value: int) -> int:
    """The largest of the processes' ``value`` (``value`` itself in one process)."""
    if world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def batch_shard(num_batches: int, rank: int, world_size: int) -> tuple[int, int]:
    """Process ``rank``'s contiguous share ``[first, end)`` of ``num_batches`` batches (the
    shares differ by at most one batch; a share may be empty)."""
    return num_batches * rank // world_size, num_batches * (rank + 1) // world_size


def gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """(sizes[rank], ...) on each process -> (sum(sizes), ...), the processes' rows in
    rank order, on every process (not differentiable; ``x`` itself in one process). Every
    process passes the same ``sizes`` and the same trailing shape and dtype."""
    rank, size = world()
    if size == 1:
        return x
    if x.shape[0] != sizes[rank]:
        raise ValueError(f"gather_rows: rank {rank} has {x.shape[0]} rows, sizes say "
                         f"{sizes[rank]}")
    device = _comm_device()
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).to(x.device)


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

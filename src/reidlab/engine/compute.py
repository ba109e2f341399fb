"""How the training step computes: mixed precision, memory format, ``torch.compile``.

* ``solver.amp`` with ``solver.amp_dtype``: ``torch.autocast`` in float16 (CUDA only, its
  loss scaled by a ``GradScaler`` so small gradients do not flush to zero) or bfloat16
  (CUDA or CPU; bfloat16 has float32's exponent range, so no scaler). fp16 on a CPU
  leaves the step in float32.
* ``solver.channels_last``: the model's parameters and each input batch in NHWC order,
  the layout cuDNN's tensor-core convolutions and oneDNN prefer.
* ``solver.compile``: ``nn.Module.compile`` (TorchDynamo + Inductor) in place, so the
  module keeps its class and its ``state_dict`` keys, and checkpoints stay loadable by an
  uncompiled model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reidlab.config import SolverConfig

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class AmpSettings:
    """Whether autocast is on, in which dtype, and whether the loss needs scaling."""

    enabled: bool
    dtype: torch.dtype
    scaled: bool


def amp_settings(solver: SolverConfig, device: torch.device) -> AmpSettings:
    """The autocast of ``solver`` on ``device``: fp16 only on CUDA, bf16 on CUDA or CPU."""
    dtype = DTYPES[solver.amp_dtype]
    enabled = solver.amp and (device.type == "cuda" or dtype == torch.bfloat16)
    return AmpSettings(enabled, dtype, scaled=enabled and dtype == torch.float16)


def prepare_model(model: nn.Module, solver: SolverConfig) -> nn.Module:
    """Put ``model`` in channels-last order and compile it, as ``solver`` says (in place;
    returns the same module)."""
    if solver.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if solver.compile:
        model.compile()
    return model


def to_memory_format(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(B, 3, H, W) images in NHWC order when ``channels_last`` (same shape and values)."""
    if channels_last and images.ndim == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images

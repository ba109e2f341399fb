"""Building registered backbones and loading public ImageNet checkpoints into them.

Supported key layouts (converted to reidlab's, which is torchvision's plus ``se.fc1/fc2``):

* torchvision ResNet / ResNeXt: ``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0/1``,
  ``fc``; identical names in reidlab.
* IBN-Net releases (Pan et al., ECCV 2018): ``bn1.IN`` / ``bn1.BN`` (IBN-a), ``layer1.2.IN``
  (IBN-b), stem ``bn1`` as InstanceNorm (IBN-b); SE-ResNet-IBN's ``se.fc.0`` / ``se.fc.2``
  (linear, no bias) become ``se.fc1`` / ``se.fc2``.
* Cadene's pretrainedmodels SENet (Hu et al., CVPR 2018): ``layer0.conv1`` / ``layer0.bn1``
  become ``conv1`` / ``bn1``; ``se_module.fc1`` / ``fc2`` (1x1 convolutions with bias) become
  linear ``se.fc1`` / ``se.fc2`` (weights reshaped (C', C, 1, 1) -> (C', C));
  ``last_linear`` becomes ``fc``.

Loading a checkpoint must give the public architecture's function, not only its names. The
registered names already carry each release's options (see ``resnet.py``); in addition,
:func:`load_pretrained` recognises the release from its key layout and raises if the
backbone's stride placement or stem pooling differ from what that release computes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidlab.registry import BACKBONES

log = logging.getLogger(__name__)

# (pattern, replacement) applied in order to every checkpoint key; the layouts never clash.
_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(module\.)+"), ""),  # DataParallel / DistributedDataParallel
    (re.compile(r"^layer0\.(conv1|bn1)\."), r"\1."),  # Cadene SENet stem
    (re.compile(r"\.se_module\.fc([12])\."), r".se.fc\1."),  # Cadene SE (1x1 conv)
    (re.compile(r"^last_linear\."), "fc."),  # Cadene classifier
    (re.compile(r"\.se\.fc\.0\."), ".se.fc1."),  # IBN-Net SE (nn.Sequential of Linear)
    (re.compile(r"\.se\.fc\.2\."), ".se.fc2."),
]
_SE_WEIGHT = re.compile(r"\.se\.fc[12]\.weight$")
_SE_BIAS = re.compile(r"\.se\.fc[12]\.bias$")
_NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")

# Options each release computes with (stride placement for bottlenecks, stem max-pool).
_RELEASE_OPTIONS: dict[str, dict[str, Any]] = {
    "torchvision": {"stride_in": "conv2", "stem_pool_ceil_mode": False},
    "ibn-net": {"stride_in": "conv2", "stem_pool_ceil_mode": False},
    # Cadene's SE-ResNet puts the stride in conv1, its SE-ResNeXt in conv2 (set per groups).
    "senet-cadene": {"stride_in": "conv1", "stem_pool_ceil_mode": True},
}


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did with a checkpoint.

    Attributes:
        missing: backbone keys the checkpoint does not provide (left at their initial value).
        unexpected: checkpoint keys (after conversion) that the backbone has no place for.
        zero_filled: SE biases absent from a bias-free checkpoint, set to zero so that the
            backbone computes the checkpoint's bias-free function.
        ignored: keys dropped on purpose: the ImageNet classifier (``fc.*``, ``last_linear.*``)
            when the backbone has none, ``num_batches_tracked`` counters, and running
            statistics stored for InstanceNorm layers by old PyTorch versions (unused).
        release: the key layout recognised (``torchvision``, ``ibn-net``, ``senet-cadene``,
            ``reidlab`` or ``unknown``).
    """

    missing: list[str]
    unexpected: list[str]
    zero_filled: list[str]
    ignored: list[str] = field(default_factory=list)
    release: str = "unknown"

    @property
    def ok(self) -> bool:
        """True when every backbone weight came from the checkpoint (or was zero-filled)
        and every checkpoint weight found its place."""
        return not self.missing and not self.unexpected


def read_checkpoint(source: str | Path) -> Any:
    """Read a checkpoint from a local path or a URL, tensors only.

    URLs (``http``, ``https``, ``file``) are downloaded once into reidlab's cache and
    checked against their SHA-256 (:mod:`reidlab.models.backbones.download`); files are
    read with safetensors (``.safetensors``) or ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: the local file does not exist.
        CheckpointError: the file is empty, truncated or not a checkpoint (naming it).
        DigestError: a download does not match its digest.
    """
    from reidlab.engine.checkpoint import read_state
    from reidlab.models.backbones.download import fetch

    text = str(source)
    if text.startswith(("http://", "https://", "file://")):
        return read_state(fetch(text), "pretrained checkpoint")
    return read_state(Path(text).expanduser(), "pretrained checkpoint")


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Return the tensor mapping inside ``obj``, descending into ``state_dict`` / ``model``.

    Raises:
        ValueError: no mapping of tensors is found.
    """
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model") if k in obj), None)
        if not isinstance(inner, Mapping):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where} is of type {type(obj).__name__}, expected a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{where} holds no tensors (keys: {list(obj)[:8]})")
    return tensors


def to_reidlab_key(key: str) -> str:
    """Convert one checkpoint key (any supported layout) to reidlab's layout."""
    for pattern, replacement in _KEY_RULES:
        key = pattern.sub(replacement, key)
    return key


def detect_release(keys: list[str]) -> str:
    """Name the public release whose key layout ``keys`` (unconverted) follow."""
    stripped = [re.sub(r"^(module\.)+", "", k) for k in keys]
    if any(k.startswith("layer0.") or ".se_module." in k for k in stripped):
        return "senet-cadene"
    if any(".se.fc1." in k for k in stripped):
        return "reidlab"
    if any(".IN." in k or ".se.fc.0." in k for k in stripped):
        return "ibn-net"
    if "bn1.weight" in stripped and "bn1.running_mean" not in stripped:
        return "ibn-net"  # IBN-b stem: an InstanceNorm without running statistics
    if "conv1.weight" in stripped:
        return "torchvision"
    return "unknown"


def _check_release_options(backbone: nn.Module, release: str) -> None:
    expected = dict(_RELEASE_OPTIONS.get(release, {}))
    if not expected or getattr(backbone, "block", None) != "bottleneck":
        expected.pop("stride_in", None)  # basic blocks have one strided conv only
    if release == "senet-cadene" and getattr(backbone, "groups", 1) > 1:
        expected["stride_in"] = "conv2"
    for option, value in expected.items():
        actual = getattr(backbone, option, value)
        if actual != value:
            raise ValueError(
                f"checkpoint has the {release} layout, which computes with {option}={value!r}, "
                f"but the backbone was built with {option}={actual!r}; build it with "
                f"{option}={value!r} (or the registered name of that release) so the "
                "loaded weights compute the release's function"
            )


def load_pretrained(
    backbone: nn.Module, source: str | Path | Mapping[str, Any], partial: bool = False
) -> LoadReport:
    """Load a public or reidlab checkpoint into ``backbone``, converting key layouts.

    Args:
        backbone: the module to fill (a :class:`ResNet` for the release checks).
        source: a path, an http(s) URL, or an already loaded (possibly wrapped) state dict.
        partial: a partial initialisation (torchvision weights into an SE / IBN variant,
            as the notebook's code did): the affine weights of a batch norm in the
            checkpoint are not poured into an InstanceNorm of the same name (IBN-b's stem),
            which keeps its fresh initialisation and is reported as missing, the
            checkpoint tensors as unexpected. Reporting is the caller's business.

    Returns:
        A :class:`LoadReport`; the classifier is loaded only if the backbone has ``fc``.

    Raises:
        ValueError: a tensor's shape differs from the backbone's (naming the key and both
            shapes), or the checkpoint's release computes with other options than the
            backbone's.
    """
    where = "state dict" if isinstance(source, Mapping) else str(source)
    raw = unwrap_state_dict(
        source if isinstance(source, Mapping) else read_checkpoint(source), where
    )
    release = detect_release(list(raw))
    _check_release_options(backbone, release)
    target = backbone.state_dict()
    modules = dict(backbone.named_modules())
    new_state = dict(target)
    loaded: set[str] = set()
    unexpected: list[str] = []
    ignored: list[str] = []
    batch_norms = {to_reidlab_key(k).rpartition(".")[0] for k in raw if k.endswith("running_var")}
    for raw_key, value in raw.items():
        key = to_reidlab_key(raw_key)
        owner = key.rpartition(".")[0]
        if partial and owner in batch_norms and isinstance(modules.get(owner), nn.InstanceNorm2d):
            unexpected.append(raw_key)  # a batch norm's statistics-bound affine, not an IN's
            continue
        if _SE_WEIGHT.search(key) and value.dim() == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)  # 1x1 convolution -> linear weight
        if key not in target:
            prefix, _, leaf = key.rpartition(".")
            is_classifier = key.startswith("fc.")
            stale_in_stats = leaf in _NORM_STATS and isinstance(
                modules.get(prefix), nn.InstanceNorm2d
            )
            (ignored if is_classifier or stale_in_stats else unexpected).append(raw_key)
            continue
        if value.shape != target[key].shape:
            raise ValueError(
                f"{where}: {raw_key!r} (as {key!r}) has shape {tuple(value.shape)}, "
                f"the backbone expects {tuple(target[key].shape)}"
            )
        new_state[key] = value.to(dtype=target[key].dtype)
        loaded.add(key)
    missing: list[str] = []
    zero_filled: list[str] = []
    for key in target:
        if key in loaded:
            continue
        if key.endswith("num_batches_tracked"):
            ignored.append(key)
        elif _SE_BIAS.search(key) and key[: -len("bias")] + "weight" in loaded:
            new_state[key] = torch.zeros_like(target[key])
            zero_filled.append(key)
        else:
            missing.append(key)
    backbone.load_state_dict(new_state)
    report = LoadReport(missing, unexpected, zero_filled, ignored, release)
    log.info(
        "loaded %d tensors from %s (%s layout): %d missing, %d unexpected, %d zero-filled",
        len(loaded),
        where,
        release,
        len(missing),
        len(unexpected),
        len(zero_filled),
    )
    return report


#: Options that build every backbone as torchvision's ResNet with the SE / IBN modules added
#: (``model.layout: torchvision``): stride in the 3x3 conv, padded max-pool, SE without bias.
TORCHVISION_LAYOUT: dict[str, Any] = {
    "stride_in": "conv2", "stem_pool_ceil_mode": False, "se_bias": False,
}


def build_backbone(
    name: str,
    last_stride: int = 1,
    weights: str | Path | None = None,
    *,
    partial: bool = False,
    **options: Any,
) -> nn.Module:
    """Build the registered backbone ``name`` and optionally load ImageNet weights.

    Args:
        name: a name in ``reidlab.registry.BACKBONES`` (e.g. ``"ibn_a_resnet50"``).
        last_stride: stride of the last stage (1: output H/16 x W/16, 2: H/32 x W/32).
        weights: path or http(s) URL of a checkpoint in a supported public layout.
        partial: accept a checkpoint that fills only part of the backbone (every tensor
            whose name and shape match is loaded); every backbone tensor left fresh and
            every checkpoint tensor left unused is logged by name. Shape mismatches and
            release mismatches still raise.
        options: :class:`ResNet` keyword arguments overriding the registered ones
            (``base_width``, ``ibn_b_blocks``, the :data:`TORCHVISION_LAYOUT` options).

    Raises:
        KeyError: unknown name (naming the nearest one).
        ValueError: the checkpoint leaves backbone weights uninitialised or has weights the
            backbone cannot hold (see :class:`LoadReport`), or its shapes differ.
    """
    backbone = BACKBONES.get(name)(last_stride=last_stride, **options)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone builder {name!r} returned {type(backbone).__name__}")
    if weights is not None:
        report = load_pretrained(backbone, weights, partial=partial)
        if partial:
            log.warning(
                "partial initialisation of %s from %s: %d tensors left fresh: %s; %d "
                "checkpoint tensors unused: %s", name, weights, len(report.missing),
                ", ".join(report.missing) or "-", len(report.unexpected),
                ", ".join(report.unexpected) or "-",
            )
        elif not report.ok:
            raise ValueError(
                f"{weights} does not fit backbone {name!r}: missing {report.missing[:5]} "
                f"({len(report.missing)}), unexpected {report.unexpected[:5]} "
                f"({len(report.unexpected)})"
            )
    return backbone

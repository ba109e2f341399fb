"""The experiment configuration: a tree of dataclasses, read from YAML plus dotted overrides.

A YAML file holds only what differs from the defaults below. ``key.sub=value`` overrides on
the command line are parsed as YAML scalars (``true``, ``3``, ``1e-4``, ``[40, 70]``).
Unknown keys, wrong types and values outside a ``Literal`` raise :class:`ConfigError`
naming the key and, for unknown keys, the nearest valid one. The resolved tree is written
into every run directory; run-time facts (class counts, pseudo labels) live elsewhere.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from reidlab.registry import nearest


class ConfigError(ValueError):
    """A configuration key, type or value is invalid."""


@dataclass
class SyntheticConfig:
    """The procedurally rendered dataset used when no real dataset is named."""

    ids: int = 160  # identities in total; half train, half test
    seed: int = 0
    domain: str = "a"


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=lambda: ["synthetic"])
    test: list[str] = field(default_factory=list)  # empty: the train datasets
    root: str = "data"  # folder holding the dataset folders
    roots: dict[str, str] = field(default_factory=dict)  # per-dataset root, overrides `root`
    height: int = 256
    width: int = 128
    batch_size: int = 64
    num_instances: int = 4
    test_batch_size: int = 128
    num_workers: int = 2
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class AugmentConfig:
    flip_p: float = 0.5
    pad: int = 10
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_aspect: float = 0.3  # aspect ratio drawn from [a, 1/a]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "resnet50"
    last_stride: int = 1
    pretrained: str | None = None  # ImageNet weights: path or URL, public key layout
    weights: str | None = None  # a reidlab checkpoint to start from or to test
    pooling: Literal["avg", "gem"] = "avg"
    gem_p: float = 3.0
    neck: Literal["bnneck", "none"] = "bnneck"
    neck_feat: Literal["before", "after"] = "after"


@dataclass
class LossConfig:
    # Terms joined by "_": softmax, triplet, center, arcface (ArcFace classifier in place of
    # the linear one), e.g. softmax_triplet_center or softmax_arcface_triplet.
    name: str = "softmax_triplet"
    label_smooth: float = 0.1
    triplet_margin: float = 0.3
    soft_margin: bool = False
    triplet_variant: Literal["batch_hard", "ap_penalty"] = "batch_hard"
    metric_loss_weight: float = 1.0
    center_weight: float = 0.0005
    center_lr: float = 0.5
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5


@dataclass
class SolverConfig:
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 3.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_factor: float = 1.0
    weight_decay_bias: float = 5e-4
    epochs: int = 120
    warmup_epochs: int = 10
    warmup_factor: float = 0.01
    milestones: list[int] = field(default_factory=lambda: [40, 70])
    gamma: float = 0.1
    amp: bool = True  # native mixed precision; used only on CUDA
    eval_period: int = 10
    checkpoint_period: int = 10
    log_period: int = 20  # iterations between TensorBoard scalar writes


@dataclass
class TestConfig:
    feat_norm: bool = True
    flip: bool = False
    metric: Literal["euclidean", "cosine"] = "euclidean"
    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    max_rank: int = 50
    best_by: str = "mean_of_datasets"
    # Also rank raw pixels (downsampled, L2-normalised, cosine), a floor for any model.
    raw_pixel_baseline: bool = False


@dataclass
class NotebookConfig:
    """Which row of the researcher's notebook a config reproduces, and its published figures."""

    id: str | None = None
    tricks: str | None = None
    map: float | None = None  # published mAP in percent
    rank1: float | None = None  # published rank-1 in percent
    # Published mean in percent, as the notebook lists it (not always (mAP + rank-1) / 2).
    mean: float | None = None
    # The dataset the published figures are for, when it is not the run's own (the
    # synthetic twin of a Market-1501 row names market1501); None: the run's dataset.
    dataset: str | None = None


@dataclass
class Config:
    seed: int = 0
    mode: Literal["supervised"] = "supervised"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: str | None = None  # default: runs/<timestamp>
    resume: str | None = None  # a run directory or checkpoint file to continue
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)
    notebook: NotebookConfig = field(default_factory=NotebookConfig)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it converted (ints to floats,
    lists to tuples); raise :class:`ConfigError` naming ``key`` otherwise."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not one of {', '.join(repr(c) for c in choices)}"
            )
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(typing.cast(type, tp), value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            hint = nearest(str(key), names)
            where = f"{prefix}." if prefix else ""
            extra = f"; did you mean {where}{hint!r}?" if hint else ""
            raise ConfigError(f"unknown key {full!r}{extra}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "roots":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key.strip().split("."), value


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for part in reversed(path[:-1]):
        out = {part: out}
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML experiment file (optional), apply dotted overrides, validate.

    YAML files may name a parent with ``_base_: relative/path.yaml``; the child's keys win.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(Path(path))
    for text in overrides or []:
        keys, value = parse_override(text)
        data = _merge(data, _nest(keys, value))
    try:
        return _build(Config, data)
    except ConfigError as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"{err}{where}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config, following ``_base_`` links (relative to the file)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    base = data.pop("_base_", None)
    if base is not None:
        data = _merge(read_yaml(path.parent / str(base)), data)
    return data


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

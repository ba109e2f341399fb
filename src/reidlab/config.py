"""The experiment configuration: a tree of pydantic models, read from YAML plus overrides.

A YAML file holds only what differs from the defaults below. ``key.sub=value`` overrides on
the command line are parsed as YAML scalars (``true``, ``3``, ``1e-4``, ``[40, 70]``).
Unknown keys, wrong types, values outside a ``Literal``, unknown backbone, loss and dataset
names, and inconsistent settings (a batch that is not P x K) raise :class:`ConfigError`
naming the key, the file and, for unknown keys, the nearest valid one. The resolved tree is
written into every run directory; run-time facts (class counts, pseudo labels) live
elsewhere.

pydantic (v2) over OmegaConf or dacite: it gives the strict field types, ``extra="forbid"``,
``Literal`` choices and cross-field validators the schema needs as declarations, and its
errors carry the location of every failing key, from which the messages below are built.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from reidlab.config_errors import message
from reidlab.registry import nearest


def _number(value: Any) -> Any:
    """Numbers as YAML gives them: ints widen to floats; ``1e-3`` (no dot, read by PyYAML
    as a string) is parsed; booleans are not numbers."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError("not a number") from None
    if isinstance(value, int):
        return float(value)
    return value


Int = StrictInt
Bool = StrictBool
Str = StrictStr
Float = Annotated[float, BeforeValidator(_number)]


class Section(BaseModel):
    """A config section: unknown keys are errors, and the schema is the only source of keys."""

    model_config = ConfigDict(extra="forbid", strict=False, validate_default=False)


class ConfigError(ValueError):
    """A configuration key, type or value is invalid."""


class SyntheticConfig(Section):
    """The procedurally rendered dataset used when no real dataset is named."""

    ids: Int = 160  # identities in total; half train, half test
    seed: Int = 0
    domain: Str = "a"


class DataConfig(Section):
    train: list[Str] = Field(default_factory=lambda: ["synthetic"])
    test: list[Str] = Field(default_factory=list)  # empty: the train datasets
    root: Str = "data"  # folder holding the dataset folders
    roots: dict[Str, Str] = Field(default_factory=dict)  # per-dataset root, overrides `root`
    height: Int = 256
    width: Int = 128
    batch_size: Int = 64
    num_instances: Int = 4
    test_batch_size: Int = 128
    num_workers: Int = 2
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @model_validator(mode="after")
    def _pk_batches(self) -> DataConfig:
        if self.num_instances < 1:
            raise ValueError(f"data.num_instances must be at least 1, got {self.num_instances}")
        if self.batch_size % self.num_instances:
            raise ValueError(f"data.batch_size {self.batch_size} is not a multiple of "
                             f"data.num_instances {self.num_instances} (PK batches: P ids x K)")
        return self


class AugmentConfig(Section):
    flip_p: Float = 0.5
    pad: Int = 10
    erasing_p: Float = 0.5
    erasing_area: tuple[Float, Float] = (0.02, 0.4)
    erasing_aspect: Float = 0.3  # aspect ratio drawn from [a, 1/a]
    mean: tuple[Float, Float, Float] = (0.485, 0.456, 0.406)
    std: tuple[Float, Float, Float] = (0.229, 0.224, 0.225)


class ModelConfig(Section):
    backbone: Str = "resnet50"
    last_stride: Int = 1
    pretrained: Str | None = None  # ImageNet weights: path or URL, public key layout
    weights: Str | None = None  # a reidlab checkpoint to start from or to test
    pooling: Literal["avg", "gem"] = "avg"
    gem_p: Float = 3.0
    neck: Literal["bnneck", "none"] = "bnneck"
    neck_feat: Literal["before", "after"] = "after"


class WeightSolverConfig(Section):
    """The optimiser of the learned loss weights: ``lr: null`` puts them in the main
    optimiser's schedule without weight decay; a number gives them their own SGD, its lr
    multiplied by ``gamma`` after every epoch."""

    lr: Float | None = None
    momentum: Float = 0.0
    weight_decay: Float = 0.0
    nesterov: Bool = False
    gamma: Float = 1.0

    @model_validator(mode="after")
    def _nesterov(self) -> WeightSolverConfig:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("loss.weight_solver.nesterov needs a positive "
                             f"loss.weight_solver.momentum, got {self.momentum}")
        return self


class LossConfig(Section):
    # Terms joined by "_": softmax, triplet, center, arcface (ArcFace classifier in place of
    # the linear one), e.g. softmax_triplet_center or softmax_arcface_triplet.
    name: Str = "softmax_triplet"
    label_smooth: Float = 0.1
    triplet_margin: Float = 0.3
    soft_margin: Bool = False
    triplet_variant: Literal["batch_hard", "ap_penalty"] = "batch_hard"
    # L2-normalise the pooled feature inside the triplet loss (the notebook's code from
    # commit 5e93570 on); BoT uses the raw feature.
    triplet_normalize: Bool = False
    metric_loss_weight: Float = 1.0
    center_weight: Float = 0.0005
    center_lr: Float = 0.5
    # Per-sample center distance: squared (Wen et al. 2016; BoT) or plain L2 (the
    # notebook's code from commit b1f76d8 on).
    center_distance: Literal["squared", "l2"] = "squared"
    # fixed weights; uncertainty: a learned s_i per term (Kendall et al. 2018);
    # notebook_id: one learned s on the ID term, exp(-s) CE + 0.5 s (the notebook's code)
    weighting: Literal["fixed", "uncertainty", "notebook_id"] = "fixed"
    weight_solver: WeightSolverConfig = Field(default_factory=lambda: WeightSolverConfig())
    arcface_scale: Float = 30.0
    arcface_margin: Float = 0.5


class SolverConfig(Section):
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Float = 3.5e-4
    momentum: Float = 0.9
    weight_decay: Float = 5e-4
    bias_lr_factor: Float = 1.0
    weight_decay_bias: Float = 5e-4
    epochs: Int = 120
    warmup_epochs: Int = 10
    warmup_factor: Float = 0.01
    milestones: list[Int] = Field(default_factory=lambda: [40, 70])
    gamma: Float = 0.1
    amp: Bool = True  # native mixed precision; used only on CUDA
    eval_period: Int = 10
    checkpoint_period: Int = 10
    log_period: Int = 20  # iterations between TensorBoard scalar writes

    @model_validator(mode="after")
    def _schedule(self) -> SolverConfig:
        # Milestones past the last epoch are allowed: a shortened run (solver.epochs=2 for
        # a smoke test) must not need its schedule edited.
        m = self.milestones
        if any(x < 1 for x in m) or any(b <= a for a, b in zip(m, m[1:], strict=False)):
            raise ValueError(f"solver.milestones {m} must be positive and strictly increasing")
        for key in ("epochs", "eval_period", "checkpoint_period", "log_period"):
            if getattr(self, key) < 1:
                raise ValueError(f"solver.{key} must be at least 1, got {getattr(self, key)}")
        if self.warmup_epochs < 0:
            raise ValueError(f"solver.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        return self


class TestConfig(Section):
    feat_norm: Bool = True
    flip: Bool = False
    metric: Literal["euclidean", "cosine"] = "euclidean"
    rerank: Bool = False
    k1: Int = 20
    k2: Int = 6
    lambda_value: Float = 0.3
    max_rank: Int = 50
    best_by: Str = "mean_of_datasets"
    # Also rank raw pixels (downsampled, L2-normalised, cosine), a floor for any model.
    raw_pixel_baseline: Bool = False


class NotebookConfig(Section):
    """Which row of the researcher's notebook a config reproduces, and its published figures."""

    id: Str | None = None
    tricks: Str | None = None
    map: Float | None = None  # published mAP in percent
    rank1: Float | None = None  # published rank-1 in percent
    # Published mean in percent, as the notebook lists it (not always (mAP + rank-1) / 2).
    mean: Float | None = None
    # The dataset the published figures are for, when it is not the run's own (the
    # synthetic twin of a Market-1501 row names market1501); None: the run's dataset.
    dataset: Str | None = None


class Config(Section):
    """The whole experiment. ``mode`` picks the training mode; a mode with settings of its
    own adds a section named after it (see :data:`MODE_SECTIONS`)."""

    seed: Int = 0
    mode: Literal["supervised"] = "supervised"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Str | None = None  # default: runs/<timestamp>
    resume: Str | None = None  # a run directory or checkpoint file to continue
    data: DataConfig = Field(default_factory=DataConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    solver: SolverConfig = Field(default_factory=SolverConfig)
    test: TestConfig = Field(default_factory=TestConfig)
    notebook: NotebookConfig = Field(default_factory=NotebookConfig)

    @model_validator(mode="after")
    def _names_and_modes(self) -> Config:
        _check_names(self)
        section = MODE_SECTIONS[self.mode]
        if section is not None and getattr(self, section, None) is None:
            raise ValueError(f"mode {self.mode!r} needs a {section!r} section")
        best, tests = self.test.best_by, [_alias(n) for n in self.data.test or self.data.train]
        if best != "mean_of_datasets" and _alias(best) not in tests:
            raise ValueError(f"test.best_by: {best!r} is not a test dataset; choose "
                             f"'mean_of_datasets' or one of {', '.join(map(repr, tests))}")
        return self


#: The section each mode reads its own settings from (``None``: it needs none).
MODE_SECTIONS: dict[str, str | None] = {"supervised": None}


def _alias(name: str) -> str:
    return "synthetic-a" if name == "synthetic" else name


def _check_names(cfg: Config) -> None:
    """Every registered name a config picks, checked at load time, before a run directory
    exists or a dataset is read. The registries fill on import, hence the local imports."""
    import reidlab.data.datasets  # noqa: F401
    import reidlab.models.backbones  # noqa: F401
    from reidlab.losses.objective import loss_tokens
    from reidlab.registry import BACKBONES, DATASETS

    checks = [("model.backbone", BACKBONES, [cfg.model.backbone])]
    checks += [(f"data.{split}", DATASETS, getattr(cfg.data, split)) for split in ("train", "test")]
    for key, registry, names in checks:
        for name in names:
            if name not in registry:
                hint = nearest(name, registry.names())
                extra = f"; did you mean {hint!r}?" if hint else ""
                raise ValueError(f"{key}: unknown {registry.kind} {name!r}{extra}")
    try:
        loss_tokens(cfg.loss.name)
    except (KeyError, ValueError) as err:
        raise ValueError(f"loss.name: {err.args[0] if err.args else err}") from None


def _build(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError("; ".join(message(Config, e) for e in err.errors()[:3])) from None


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples become lists)."""
    return cfg.model_dump(mode="json")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true and false. YAML 1.1 also reads
    yes/no/on/off as booleans, so ``test.flip=yes`` would pass for true."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into its key path and YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has no key")
    value = yaml.load(raw, _Loader) if raw.strip() else ""
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
        return _build(data)
    except ConfigError as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"{err}{where}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config, following ``_base_`` links (relative to the file)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        try:
            data = yaml.load(fh, _Loader) or {}
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

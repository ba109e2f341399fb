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
    # Decoded-image cache of the train images, uint8 at height x width: none, memory
    # (shared by the workers) or disk (a memory-mapped .npy under cache_dir, rebuilt when
    # the files' sizes or mtimes or the resolution change).
    cache: Literal["none", "memory", "disk"] = "none"
    cache_dir: Str | None = None  # default: <data.root>/cache
    # Where the train augmentation runs: per image in the loader workers, or on whole
    # batches on the training device (the same augmentations for the same seeds).
    augment_on: Literal["workers", "device"] = "workers"
    # Who decodes the train images: the DataLoader (simplejpeg / Pillow, on the CPU) or
    # NVIDIA DALI on the GPU (nvJPEG; `pip install 'reidlab[dali]'`, CUDA only), which then
    # augments on the device as augment_on=device does, with the same per-sample draws.
    backend: Literal["torch", "dali"] = "torch"
    # Leave out the images and entries the dataset check finds bad (unreadable, truncated,
    # zero-byte or non-image files; for folder/csv datasets also single-image training ids,
    # query ids without gallery images, duplicates), logging their count and names and
    # writing them into metrics.json, instead of refusing to start.
    skip_bad_images: Bool = False
    # K may exceed an identity's image count only when this is true: that identity's K
    # images are then drawn with replacement (the BoT sampler's behaviour), and logged.
    sample_with_replacement: Bool = False
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)

    @model_validator(mode="after")
    def _pk_batches(self) -> DataConfig:
        if self.num_instances < 1:
            raise ValueError(f"data.num_instances must be at least 1, got {self.num_instances}")
        if self.batch_size < self.num_instances or self.batch_size % self.num_instances:
            raise ValueError(f"data.batch_size {self.batch_size} is not a positive multiple of "
                             f"data.num_instances {self.num_instances} (PK batches: P ids x K)")
        if self.backend == "dali" and self.cache != "none":
            raise ValueError(f"data.backend dali decodes every image on the GPU; data.cache "
                             f"{self.cache!r} would decode them on the CPU: give one of the two")
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
    # Channels of the stem and layer1 (64 in every published ResNet; 16 or 32 for CPU-sized
    # experiments; layer i has width * 2**i planes). Weights of another width cannot load.
    width: Int = 64
    # Every residual branch's last batch norm starts at zero scale, each block as the
    # identity (Goyal et al. 2017): for training from scratch, as the synthetic twins do.
    zero_init_residual: Bool = False
    # IBN-b's InstanceNorm after the residual sum: in the last block of layer1 and layer2
    # (IBN-Net, Pan et al. ECCV 2018; needed for its released weights) or in every block
    # of both (the notebook's code).
    ibn_b_blocks: Literal["last", "all"] = "last"
    # release: each backbone as its public weights compute (Cadene SE-ResNet: stride in
    # conv1, ceil-mode max-pool, SE with biases); torchvision: torchvision's ResNet with the
    # SE / IBN modules added (stride in conv2, SE without biases), as the notebook built
    # every variant to load torchvision's weights into it.
    layout: Literal["release", "torchvision"] = "release"
    # Load every ImageNet tensor whose name and shape match and list by name what is left
    # fresh (new SE / IN / IBN layers) and what is unused; shape mismatches still fail.
    # False (the default): a checkpoint must fill the whole backbone.
    pretrained_partial: Bool = False
    # Under torchrun (world size > 1): every batch norm normalises with the statistics of
    # the global batch (SyncBatchNorm on CUDA, reidlab's GlobalBatchNorm on gloo), as one
    # process would. False: each process normalises its own share (plain DDP; the running
    # statistics are rank 0's). No effect in one process.
    sync_bn: Bool = True

    @model_validator(mode="after")
    def _width(self) -> ModelConfig:
        if self.width < 4 or self.width % 4:
            raise ValueError(f"model.width must be a positive multiple of 4, got {self.width}")
        return self


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


class CenterSolverConfig(Section):
    """The centres' SGD beyond its lr (``loss.center_lr``): plain SGD by default (BoT); the
    notebook's code from commit 7936d7b on used momentum 0.9, Nesterov, weight decay 1e-4
    and an exponential lr decay per epoch (``gamma``)."""

    momentum: Float = 0.0
    weight_decay: Float = 0.0
    nesterov: Bool = False
    gamma: Float = 1.0

    @model_validator(mode="after")
    def _nesterov(self) -> CenterSolverConfig:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("loss.center_solver.nesterov needs a positive "
                             f"loss.center_solver.momentum, got {self.momentum}")
        return self


class LossConfig(Section):
    # Terms joined by "_": softmax, triplet, center, arcface (ArcFace classifier in place of
    # the linear one), e.g. softmax_triplet_center or softmax_arcface_triplet.
    name: Str = "softmax_triplet"
    label_smooth: Float = 0.1
    triplet_margin: Float = 0.3
    soft_margin: Bool = False
    # batch_hard: [d_ap - d_an + m]+; ap_penalty: d_ap + [d_ap - d_an + m]+ (the notebook's
    # text for row 17); double_ap: [2 d_ap - d_an + m]+ (its code at commit 005ea40).
    triplet_variant: Literal["batch_hard", "ap_penalty", "double_ap"] = "batch_hard"
    # L2-normalise the pooled feature inside the triplet loss (the notebook's code from
    # commit 5e93570 on); BoT uses the raw feature.
    triplet_normalize: Bool = False
    metric_loss_weight: Float = 1.0
    # Weight of the ID term (the notebook's LOSS.ID_LOSS_WEIGHT, from commit fc89c26 on).
    id_loss_weight: Float = 1.0
    center_weight: Float = 0.0005
    center_lr: Float = 0.5
    center_solver: CenterSolverConfig = Field(default_factory=lambda: CenterSolverConfig())
    # Per-sample center distance: squared (Wen et al. 2016; BoT) or plain L2 (the
    # notebook's code from commit b1f76d8 on).
    center_distance: Literal["squared", "l2"] = "squared"
    # fixed weights; uncertainty: a learned s_i per term (Kendall et al. 2018);
    # notebook_id: one learned s on the ID term, exp(-s) CE + 0.5 s (the notebook's code)
    weighting: Literal["fixed", "uncertainty", "notebook_id"] = "fixed"
    weight_solver: WeightSolverConfig = Field(default_factory=lambda: WeightSolverConfig())
    arcface_scale: Float = 30.0
    arcface_margin: Float = 0.5
    # With "arcface" in loss.name: replace the linear classifier by ArcFace (its logits feed
    # the softmax term), or add ArcFace as an extra head and term beside it, on the neck
    # feature, with plain cross entropy (the notebook's softmax_arcface_triplet).
    arcface_head: Literal["replace", "extra"] = "replace"
    # The notebook's quirk: its extra head's class weights were in no optimiser and stayed
    # at their random initialisation. True reproduces it (extra head only).
    arcface_frozen: Bool = False
    # Distillation from a frozen teacher (continual learning; 0 = off), each term's weight:
    # ce_dist, the notebook's feature distillation (softmax over the neck feature / T,
    # compared by BCE at commit fc89c26, ce_dist_form soft_ce: its soft cross-entropy from
    # 7bcccb9); tr_dist, its triplet distillation (margin loss.triplet_margin); logit_dist,
    # Hinton's KD of the old classes' logits, T^2 KL (needs continual.classifier: grow).
    ce_dist: Float = 0.0
    ce_dist_form: Literal["bce", "soft_ce"] = "bce"
    tr_dist: Float = 0.0
    logit_dist: Float = 0.0
    distill_temperature: Float = 10.0  # T of ce_dist and logit_dist


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
    amp: Bool = True  # native mixed precision: on CUDA, and on the CPU with bf16
    amp_dtype: Literal["fp16", "bf16"] = "fp16"  # fp16 steps through a gradient scaler
    channels_last: Bool = False  # NHWC memory format for the model and its inputs
    compile: Bool = False  # torch.compile the model (nn.Module.compile: same state keys)
    eval_period: Int = 10
    checkpoint_period: Int = 10
    log_period: Int = 20  # iterations between TensorBoard scalar writes
    checkpoint_every_iters: Int = 0  # also save the full state every N iterations; 0: off
    keep_checkpoints: Int = 2  # full training states kept (the newest ones)

    @model_validator(mode="after")
    def _schedule(self) -> SolverConfig:
        if not self.lr > 0:
            raise ValueError(f"solver.lr must be positive, got {self.lr}")
        # Milestones past the last epoch are not refused here (a saved config holds the
        # defaults of a short run); a run refuses the milestones its user set past
        # solver.epochs before it starts (reidlab.engine.preflight).
        m = self.milestones
        if any(x < 1 for x in m) or any(b <= a for a, b in zip(m, m[1:], strict=False)):
            raise ValueError(f"solver.milestones {m} must be positive and strictly increasing")
        if self.checkpoint_every_iters < 0:
            raise ValueError("solver.checkpoint_every_iters must be >= 0 (0: only at epoch "
                             f"ends), got {self.checkpoint_every_iters}")
        for key in ("epochs", "eval_period", "checkpoint_period", "log_period",
                    "keep_checkpoints"):
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
    # The distance re-ranking starts from: squared Euclidean (Zhong et al.'s code, BoT) or
    # plain Euclidean (the notebook's tools/test.py).
    rerank_distance: Literal["squared", "euclidean"] = "squared"
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
    # The notebook code's commit (ArronHZG/reid-baseline) whose settings this file trains.
    commit: Str | None = None


class ContinualConfig(Section):
    """Continual learning (``mode: continual``): ``tasks`` trained in order, each a stage of
    the run directory, every task's test set evaluated after each task."""

    tasks: list[Str] = Field(default_factory=list)  # dataset names, in training order
    # finetune: plain sequential training (lower bound); lwf: the previous model, frozen,
    # is the teacher of the loss.ce_dist / tr_dist / logit_dist terms; joint: one model on
    # all tasks at once (upper bound).
    method: Literal["finetune", "lwf", "joint"] = "lwf"
    # From task 2 on, the classifier is replaced by one for the new task's identities (the
    # notebook's code) or grown by them, the old rows kept (Li and Hoiem's LwF).
    classifier: Literal["replace", "grow"] = "replace"
    # Solver keys that differ for tasks 2, 3, ... (e.g. {lr: 3.5e-5, epochs: 150}); the rest
    # comes from the top-level solver, which task 1 (and joint) trains with.
    task_solver: dict[Str, Any] = Field(default_factory=dict)
    # False: task 1 is not trained; model.weights is the task-1 model (the notebook's
    # teacher, a finished Market-1501 run).
    train_first: Bool = True


class AdaptConfig(Section):
    """Unsupervised domain adaptation (``mode: adapt``): the source model (trained on
    ``data.train``, or ``model.weights``) is adapted to the unlabelled train split of
    ``target`` by ``rounds`` rounds of clustering and training, each a stage of the run
    directory (``round1/``, ...). The target's true ids are read only to score."""

    method: Literal["ssg"] = "ssg"  # Fu et al., ICCV 2019
    target: Str = "synthetic-b"  # the target dataset (its train split, labels unused)
    rounds: Int = 5
    # Features clustered and trained, each with its own labels: the whole body and the
    # upper / lower half of the last feature map (SSG); [global]: the notebook's variant.
    parts: list[Literal["global", "upper", "lower"]] = Field(
        default_factory=lambda: ["global", "upper", "lower"])  # type: ignore[arg-type]
    cluster: Literal["dbscan", "dec"] = "dbscan"
    num_clusters: Int | None = None  # DEC's K (cluster: dec)
    # The loss of the global feature each round (loss.name tokens): triplet (SSG), or the
    # notebook's softmax_triplet_center with a new classifier for the clusters.
    loss: Str = "triplet"
    part_weight: Float = 1.0  # weight of each part's triplet term
    k1: Int = 20
    k2: Int = 6
    # 0: the k-reciprocal Jaccard distance (SSG); 0.3: the re-ranked distance the
    # notebook's code clustered.
    lambda_value: Float = 0.0
    rho: Float = 1.6e-3  # eps: mean of the smallest rho fraction of pairwise distances
    min_samples: Int = 4
    flip: Bool = True  # target features averaged with the flipped image's
    # Solver keys that differ for the rounds (e.g. {epochs: 8, warmup_epochs: 0}); the rest
    # comes from the top-level solver, which the source model trains with.
    round_solver: dict[Str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _adapt(self) -> AdaptConfig:
        if not self.parts or self.parts[0] != "global" or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"adapt.parts {self.parts} must start with 'global', no repeats")
        if self.rounds < 1:
            raise ValueError(f"adapt.rounds must be at least 1, got {self.rounds}")
        if self.cluster == "dec" and (self.num_clusters is None or self.num_clusters < 2):
            raise ValueError("adapt.cluster: dec needs adapt.num_clusters >= 2, got "
                             f"{self.num_clusters}")
        if not 0.0 <= self.lambda_value < 1.0 or not 0.0 < self.rho < 1.0:
            raise ValueError(f"adapt.lambda_value must be in [0, 1) and adapt.rho in (0, 1), "
                             f"got {self.lambda_value} and {self.rho}")
        if self.min_samples < 1 or self.k1 < 1 or self.k2 < 1:
            raise ValueError("adapt.min_samples, adapt.k1 and adapt.k2 must be positive")
        try:
            SolverConfig.model_validate(self.round_solver)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"adapt.round_solver.{where}: {first['msg']}") from None
        import reidlab.data.datasets  # noqa: F401 (fills the dataset registry)
        from reidlab.losses.objective import loss_tokens
        from reidlab.registry import DATASETS

        if self.target not in DATASETS:
            hint = nearest(self.target, DATASETS.names())
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise ValueError(f"adapt.target: unknown dataset {self.target!r}{extra}")
        try:
            loss_tokens(self.loss)
        except (KeyError, ValueError) as err:
            raise ValueError(f"adapt.loss: {err.args[0] if err.args else err}") from None
        return self


class Config(Section):
    """The whole experiment. ``mode`` picks the training mode; a mode with settings of its
    own adds a section named after it (see :data:`MODE_SECTIONS`)."""

    seed: Int = 0
    mode: Literal["supervised", "adapt", "continual"] = "supervised"
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
    continual: ContinualConfig | None = None
    adapt: AdaptConfig | None = None

    @model_validator(mode="after")
    def _names_and_modes(self) -> Config:
        _check_names(self)
        _check_continual(self)
        section = MODE_SECTIONS[self.mode]
        if section is not None and getattr(self, section, None) is None:
            article = "an" if section[0] in "aeiou" else "a"
            raise ValueError(f"mode {self.mode!r} needs {article} {section!r} section")
        best, tests = self.test.best_by, [_alias(n) for n in self.data.test or self.data.train]
        if best != "mean_of_datasets" and _alias(best) not in tests:
            raise ValueError(f"test.best_by: {best!r} is not a test dataset; choose "
                             f"'mean_of_datasets' or one of {', '.join(map(repr, tests))}")
        return self


#: The section each mode reads its own settings from (``None``: it needs none).
MODE_SECTIONS: dict[str, str | None] = {"supervised": None, "adapt": "adapt",
                                        "continual": "continual"}


def _check_continual(cfg: Config) -> None:
    """The continual section against the rest: its tasks are known datasets, its solver
    keys are solver keys, and the distillation weights are used only where a teacher is."""
    from reidlab.registry import DATASETS

    distill = [k for k in ("ce_dist", "tr_dist", "logit_dist") if getattr(cfg.loss, k) > 0]
    c = cfg.continual
    if c is None or cfg.mode != "continual":
        if c is not None:
            raise ValueError(f"a continual section is given but mode is {cfg.mode!r}; set "
                             "mode: continual (or run reidlab continual)")
        if distill:
            raise ValueError(f"loss.{distill[0]} needs a teacher: it is used by mode: "
                             "continual with continual.method: lwf")
        return
    if not c.tasks:
        raise ValueError("continual.tasks is empty: list the datasets to learn in order")
    for name in c.tasks:
        if name not in DATASETS:
            hint = nearest(name, DATASETS.names())
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise ValueError(f"continual.tasks: unknown dataset {name!r}{extra}")
    if len({_alias(n) for n in c.tasks}) != len(c.tasks):
        raise ValueError(f"continual.tasks {c.tasks} names a dataset twice")
    for key in c.task_solver:
        if key not in SolverConfig.model_fields:
            hint = nearest(key, list(SolverConfig.model_fields))
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise ValueError(f"continual.task_solver.{key}: unknown solver key{extra}")
    try:
        SolverConfig.model_validate({**cfg.solver.model_dump(), **c.task_solver})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"continual.task_solver{'.' + where if where else ''}: "
                         f"{first['msg']}") from None
    if c.method == "lwf" and not distill:
        raise ValueError("continual.method lwf needs a distillation term: set loss.ce_dist, "
                         "loss.tr_dist or loss.logit_dist above 0")
    if c.method != "lwf" and distill:
        raise ValueError(f"loss.{distill[0]} is set but continual.method is {c.method!r}, "
                         "which has no teacher; use method lwf or set it to 0")
    if cfg.loss.logit_dist > 0 and c.classifier != "grow":
        raise ValueError("loss.logit_dist distils the old classes' logits: it needs "
                         "continual.classifier: grow")
    if not c.train_first and not cfg.model.weights:
        raise ValueError("continual.train_first: false needs model.weights, the task-1 model")
    if c.method == "joint" and not c.train_first:
        raise ValueError("continual.method joint trains on all tasks at once; "
                         "continual.train_first must be true")


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

    YAML files may name a parent with ``_base_: relative/path.yaml`` (or a list of them,
    merged in order, later ones winning); the child's keys win.
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
    bases = base if isinstance(base, list) else [] if base is None else [base]
    merged: dict[str, Any] = {}
    for parent in bases:  # in order, each later one winning, the file itself last
        merged = _merge(merged, read_yaml(path.parent / str(parent)))
    return _merge(merged, data) if bases else data


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

"""Everything a run can check before its run directory is created or changed.

:func:`plan_train` and :func:`plan_test` return the folder a run may write into, or raise
an error naming the key, file or folder at fault, before anything is written: the output
folder's writability; that it holds no other run (a finished run is never trained over;
a stopped one is continued with ``resume=``); the resume source (a full state that
loads, a run that is not finished or whose ``solver.epochs`` grows, the same settings);
milestones within the epochs of every solver the mode trains with; the layouts of the
datasets the mode reads (supervised: train and test sets; continual: every task; adapt:
source and target) and that PK batches can be drawn.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from reidlab.config import Config, ConfigError, SolverConfig, load_config, to_dict
from reidlab.data.records import ReIDDataset
from reidlab.engine.checkpoint import CheckpointError, newest_first, read_state
from reidlab.engine.rundir import CHECKPOINT_PREFIX, RunDir, RunFolderError, check_writable

log = logging.getLogger("reidlab")

#: Keys a resumed run may change: where things are and how fast, not what is trained.
RESUME_MAY_CHANGE = ("output_dir", "resume", "device", "data.num_workers", "data.root",
                     "data.roots", "data.cache_dir", "solver.epochs")


def new_run_path(prefix: str = "") -> Path:
    """``runs/<prefix><timestamp>``, the folder of a run without ``output_dir``."""
    return Path("runs") / f"{prefix}{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


def resume_source(resume: str | Path) -> tuple[Path, list[Path]]:
    """The run folder of ``resume`` (a run directory or a state file) and its full states.

    Raises:
        FileNotFoundError: ``resume`` does not exist.
    """
    path = Path(resume)
    if path.is_file():
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return folder, [path]
    if not path.is_dir():
        raise FileNotFoundError(f"resume={resume}: no such run directory or checkpoint file")
    states = RunDir(path).checkpoint_files(CHECKPOINT_PREFIX)
    return path, states or sorted(path.glob(f"{CHECKPOINT_PREFIX}_*.pt"))


def _flat(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _flat(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, data


def changed_settings(saved: Config, cfg: Config) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, new value)`` for every setting that differs, except
    :data:`RESUME_MAY_CHANGE`."""
    old, new = dict(_flat(to_dict(saved))), dict(_flat(to_dict(cfg)))
    keys = sorted(set(old) | set(new))
    return [(k, old.get(k), new.get(k)) for k in keys
            if old.get(k) != new.get(k)
            and not any(k == f or k.startswith(f + ".") for f in RESUME_MAY_CHANGE)]


def _check_resume(cfg: Config, folder: Path, states: list[Path]) -> None:
    assert cfg.resume is not None
    rd, key = RunDir(folder), f"resume={cfg.resume}"
    pid = rd.running_elsewhere()
    if pid is not None:
        raise RunFolderError(f"{key}: {folder} is running now (pid {pid}); wait for it to end "
                             "or stop it first")
    status = rd.status()
    reached = int(status.get("epoch", 0))
    if rd.is_finished() and cfg.solver.epochs <= reached:
        raise RunFolderError(
            f"{key}: {folder} is finished ({rd.describe().removeprefix('a ')}); nothing to "
            f"resume and nothing was changed. To train it longer give solver.epochs above "
            f"{reached}; to train again, choose a new output_dir")
    if cfg.solver.epochs < reached:
        raise RunFolderError(f"{key}: solver.epochs={cfg.solver.epochs} is below epoch "
                             f"{reached}, which {folder} has reached")
    if rd.config.is_file():
        try:
            saved = load_config(rd.config)
        except ConfigError as err:
            raise RunFolderError(f"{key}: its config.yaml does not load: {err}") from None
        changes = changed_settings(saved, cfg)
        if changes:
            k, old, new = changes[0]
            more = f" (and {len(changes) - 1} more: {', '.join(c[0] for c in changes[1:6])})" \
                if len(changes) > 1 else ""
            raise RunFolderError(
                f"{key}: {k} is {old!r} in {rd.config} but {new!r} now{more}; a resumed run "
                "keeps its settings (only solver.epochs may grow): drop the change, or "
                "start a new run in a new output_dir")
    if not states and _staged(folder):
        return  # a mode of stages (continual tasks, adapt rounds) resumes stage by stage
    if not states:
        gone = " (a finished run's state is deleted by sweep unless --keep-state)" \
            if rd.is_finished() else ""
        raise RunFolderError(f"{key}: {folder} holds no full training state "
                             f"(checkpoints/{CHECKPOINT_PREFIX}_*.pt) to continue from{gone}")
    reasons = []
    for path in newest_first(states):
        try:
            read_state(path, "full training state")
            return
        except (CheckpointError, FileNotFoundError) as err:
            reasons.append(str(err))
    raise CheckpointError(f"{key}: no full training state loads: " + "; ".join(reasons))


def _staged(folder: Path) -> bool:
    """Whether a stage of ``folder`` (``task2/``, ``round1/``) holds a full training state,
    or is finished and keeps its final model (a run stopped before the next stage saved a
    state continues with that stage)."""
    stages = [RunDir(p) for p in folder.iterdir() if p.is_dir()]
    return any(rd.has_state() or (rd.is_finished() and rd.final_model.is_file())
               for rd in stages)


def _refuse_reuse(out: Path) -> None:
    """Raise unless ``out`` holds no run, or one that left nothing to continue from."""
    rd = RunDir(out)
    if not rd.holds_run():
        return
    pid = rd.running_elsewhere()
    if pid is not None:
        raise RunFolderError(f"output_dir {out} holds a run that is running now (pid {pid})")
    kept = rd.has_state() or rd.metrics.is_file() or rd.checkpoint_files("best")
    if not kept and not rd.is_finished():
        log.warning("output_dir %s holds %s that saved nothing to continue from; "
                    "starting it again", out, rd.describe())
        return
    if rd.is_finished():
        hint = (f"choose a new output_dir (or resume={out} with a larger solver.epochs to "
                "train it longer)")
    elif rd.has_state():
        hint = f"continue it with resume={out}, or choose a new output_dir"
    else:
        hint = "choose a new output_dir"
    raise RunFolderError(f"output_dir {out} already holds {rd.describe()}; {hint}")


def _solvers(cfg: Config) -> list[tuple[str, SolverConfig, bool]]:
    """``(key, solver, whether its milestones were set)`` of every fit the run makes: the
    top-level solver, and continual's later tasks or adapt's rounds with their own keys."""
    top_set = "milestones" in cfg.solver.model_fields_set
    out = [("solver", cfg.solver, top_set)]
    extra: dict[str, Any] = {}
    key = ""
    if cfg.mode == "continual" and cfg.continual is not None:
        c = cfg.continual
        if c.method != "joint" and len(c.tasks) > 1 and c.task_solver:
            extra, key = c.task_solver, "continual.task_solver"
    elif cfg.mode == "adapt" and cfg.adapt is not None and cfg.adapt.round_solver:
        extra, key = cfg.adapt.round_solver, "adapt.round_solver"
    if extra:
        solver = SolverConfig.model_validate({**cfg.solver.model_dump(), **extra})
        out.append((key, solver, top_set or "milestones" in extra))
    return out


def check_milestones(cfg: Config) -> None:
    """Milestones the user set must lie within the epochs of the solver they schedule
    (``solver``, and ``continual.task_solver`` / ``adapt.round_solver`` with the keys they
    inherit); the defaults, made for 120 epochs, are left to a short run."""
    for key, s, user_set in _solvers(cfg):
        late = [m for m in s.milestones if m > s.epochs]
        if late and user_set:
            raise ConfigError(
                f"{key}.milestones {s.milestones}: {late} lie beyond {key}.epochs {s.epochs}, "
                f"so the lr would never drop there; give milestones within 1..{s.epochs} "
                f"({key}.milestones=[] for none)")


def run_datasets(cfg: Config) -> tuple[dict[str, str], list[list[str]]]:
    """The datasets a run of ``cfg.mode`` reads, each with the config key that names it
    (``data.train``, ``continual.tasks``, ``adapt.target``, ``data.test``), and the groups
    of them trained together in PK batches.

    supervised: ``data.train`` (one group, joint) and ``data.test``; continual: every task
    (one group each, or one for ``joint``; task 1 none when ``train_first`` is false) and
    ``data.test``; adapt: the source ``data.train`` (unless ``model.weights`` is the
    source model), the target and ``data.test``.
    """
    d = cfg.data
    keys: dict[str, str] = {}
    groups: list[list[str]]
    if cfg.mode == "continual" and cfg.continual is not None:
        c = cfg.continual
        keys = dict.fromkeys(c.tasks, "continual.tasks")
        groups = [list(c.tasks)] if c.method == "joint" else [[n] for n in c.tasks]
        if not c.train_first:
            groups = groups[1:]
    elif cfg.mode == "adapt" and cfg.adapt is not None:
        source = [] if cfg.model.weights else list(d.train)
        keys = dict.fromkeys(source, "data.train")
        keys.setdefault(cfg.adapt.target, "adapt.target")
        groups = [source] if source else []
    else:
        keys = dict.fromkeys(d.train, "data.train")
        groups = [list(d.train)]
    for name in d.test:
        keys.setdefault(name, "data.test")
    return keys, groups


def check_data(cfg: Config) -> None:
    """Parse every dataset of the run (:func:`run_datasets`; layout, names, images: see
    :func:`~reidlab.data.pipeline.load_named`) and check that PK batches can be drawn from
    each group trained together. A dataset root that does not fit is reported with the
    config key that names the dataset and the one that gives its root."""
    from reidlab.data.datasets import combine_train
    from reidlab.data.datasets.base import DatasetLayoutError
    from reidlab.data.pipeline import load_named
    from reidlab.data.sampler import RandomIdentitySampler
    from reidlab.engine.validator import dataset_key

    d = cfg.data
    keys, groups = run_datasets(cfg)
    if cfg.mode == "adapt" and cfg.adapt is not None:
        target = dataset_key(cfg.adapt.target)
        if target not in [dataset_key(n) for n in d.test or [target]]:
            raise ConfigError(f"adapt.target {cfg.adapt.target!r} must be one of data.test "
                              f"{d.test} (its test split scores each round)")
    loaded = {}
    for name, key in keys.items():
        try:
            loaded[name] = load_named(d, name)
        except DatasetLayoutError as err:
            root = f"data.roots.{name}" if name in d.roots else "data.root"
            raise DatasetLayoutError(f"{key}: {err} (the root is {root})") from None
    for group in groups:
        train = [loaded[n] for n in group]
        for ds in train:
            _check_instances(cfg, ds)
        records, _ = combine_train(train)
        try:
            RandomIdentitySampler([r.pid for r in records], d.batch_size, d.num_instances)
        except ValueError as err:
            raise ConfigError(f"data.batch_size / data.num_instances: {err}") from None


def _check_instances(cfg: Config, ds: ReIDDataset) -> None:
    """Every training identity of ``ds`` has ``data.num_instances`` images, unless they
    are drawn with replacement (then logged)."""
    d = cfg.data
    counts = Counter(r.pid for r in ds.train)
    if not counts:
        return
    small = sorted(p for p, c in counts.items() if c < d.num_instances)
    if small and not d.sample_with_replacement:
        fewest = min(counts, key=lambda p: (counts[p], p))
        raise ConfigError(
            f"data.num_instances {d.num_instances} is more than the {counts[fewest]} "
            f"images of training identity {fewest} of {ds.name} ({len(small)} identities "
            f"have fewer than {d.num_instances}); set data.sample_with_replacement=true "
            "to draw their images with replacement (the BoT sampler), or lower "
            "data.num_instances")
    if small:
        log.info("%s: %d training identities have fewer than %d images; their images "
                 "are drawn with replacement (data.sample_with_replacement)", ds.name,
                 len(small), d.num_instances)


def check_files(cfg: Config) -> None:
    """``model.weights`` and a local ``model.pretrained`` must exist."""
    if cfg.model.weights and not Path(cfg.model.weights).exists():
        raise FileNotFoundError(f"model.weights={cfg.model.weights}: no such checkpoint file "
                                "or run directory")
    pre = cfg.model.pretrained
    if pre and "://" not in pre and not Path(pre).expanduser().is_file():
        raise FileNotFoundError(f"model.pretrained={pre}: no such file")


def plan_train(cfg: Config) -> Path:
    """The folder a training run writes into, after every check (module docstring)."""
    if cfg.resume:
        folder, states = resume_source(cfg.resume)
        out = Path(cfg.output_dir) if cfg.output_dir else folder
        check_writable(out)
        _check_resume(cfg, folder, states)
        if out.resolve() != folder.resolve():
            _refuse_reuse(out)
    else:
        out = Path(cfg.output_dir) if cfg.output_dir else new_run_path()
        check_writable(out)
        _refuse_reuse(out)
        check_milestones(cfg)
    check_files(cfg)
    check_data(cfg)
    return out


def plan_test(cfg: Config) -> Path:
    """The folder a test writes into: ``output_dir``; a ``test-*`` folder inside it when it
    holds a training run (whose files a test never touches); ``runs/test-*`` without one.

    Raises:
        RunFolderError: ``output_dir`` holds a finished test, or cannot be written.
    """
    if not cfg.model.weights:
        raise ConfigError("reidlab test needs model.weights=RUN_DIR or a checkpoint file")
    check_files(cfg)
    if cfg.output_dir is None:
        out = new_run_path("test-")
    else:
        out = Path(cfg.output_dir)
        rd = RunDir(out)
        if rd.holds_run() and rd.status().get("mode") != "test":
            out = out / new_run_path("test-").name
            log.info("%s holds a training run; the test writes into %s", rd.path, out)
        elif rd.is_finished():
            raise RunFolderError(f"output_dir {out} already holds a finished test (of "
                                 f"{rd.status().get('weights', '?')}); choose a new output_dir")
    check_writable(out)
    return out

"""Everything a run can check before its run directory is created or changed.

:func:`plan_train` and :func:`plan_test` return the folder a run may write into, or raise
an error naming the key, file or folder at fault, before anything is written: the output
folder's writability; that it holds no other run (a finished run is never trained over;
a stopped one is continued with ``resume=``); the resume source (a full state that
loads, a run that is not finished or whose ``solver.epochs`` grows, the same settings);
milestones within the epochs; the datasets' layouts and that PK batches can be drawn.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from reidlab.config import Config, ConfigError, load_config, to_dict
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
        return  # a mode of stages (continual tasks) resumes each stage from its own state
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
    """Whether a stage of ``folder`` (``task2/``, ``round1/``) holds a full training state."""
    return any(RunDir(p).has_state() for p in folder.iterdir() if p.is_dir())


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


def check_milestones(cfg: Config) -> None:
    """Milestones the user set must lie within ``solver.epochs`` (the defaults, made for
    120 epochs, are left to a short run)."""
    s = cfg.solver
    late = [m for m in s.milestones if m > s.epochs]
    if late and "milestones" in s.model_fields_set:
        raise ConfigError(
            f"solver.milestones {s.milestones}: {late} lie beyond solver.epochs {s.epochs}, "
            f"so the lr would never drop there; give milestones within 1..{s.epochs} "
            "(solver.milestones=[] for none)")


def check_data(cfg: Config) -> None:
    """Parse every dataset of the run (layout, names, images: see
    :func:`~reidlab.data.pipeline.load_named`) and check that PK batches can be drawn."""
    from reidlab.data.datasets import combine_train
    from reidlab.data.pipeline import load_named
    from reidlab.data.sampler import RandomIdentitySampler

    if cfg.mode != "supervised":  # other modes read the datasets of their own sections
        return
    d = cfg.data
    loaded = {n: load_named(d, n) for n in dict.fromkeys([*d.train, *d.test])}
    train = [loaded[n] for n in d.train]
    for ds in train:
        counts = Counter(r.pid for r in ds.train)
        if not counts:
            continue
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
    records, _ = combine_train(train)
    try:
        RandomIdentitySampler([r.pid for r in records], d.batch_size, d.num_instances)
    except ValueError as err:
        raise ConfigError(f"data.batch_size / data.num_instances: {err}") from None


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

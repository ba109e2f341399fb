"""The run context: what every piece of a run needs to know about where and how it runs."""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reidlab.config import Config, save_config
from reidlab.engine.collectives import on_rank_zero, world
from reidlab.engine.compute import amp_settings
from reidlab.engine.preflight import new_run_path
from reidlab.engine.rundir import RunDir

log = logging.getLogger("reidlab")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A console handler that writes to whatever ``sys.stderr`` is now, not the stream of
    its creation (which a caller, or a test's capture, may have closed since)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def setup_logging(log_file: Path | None, quiet: bool = False) -> None:
    """Log to ``log_file`` (and the console) until the next call; ``None``: console only.
    ``quiet`` (the processes of a distributed run other than rank 0): warnings only."""
    root = logging.getLogger("reidlab")
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_reidlab_run", False):
            root.removeHandler(handler)
            handler.close()
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        file_handler._reidlab_run = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
    if not any(getattr(h, "_reidlab_console", False) for h in root.handlers):
        console = _StderrHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._reidlab_console = True  # type: ignore[attr-defined]
        root.addHandler(console)


@dataclass
class RunContext:
    """Config, run directory, device, mixed precision and process rank of one run.

    Only the process that ``writes`` (rank 0) writes files, logs to TensorBoard and saves
    checkpoints; the others train and synchronise.
    """

    cfg: Config
    run: RunDir
    device: torch.device
    amp: bool
    rank: int = 0
    world_size: int = 1

    @property
    def writes(self) -> bool:
        return self.rank == 0

    @classmethod
    def create(cls, cfg: Config, prefix: str = "", path: Path | None = None) -> RunContext:
        """Make the run directory (``path`` as :mod:`reidlab.engine.preflight` planned it;
        else ``output_dir``; else the resumed run's; else a new timestamped one), start its
        log, save the resolved config (atomically), seed the generators.

        In a process group (:func:`~reidlab.engine.collectives.init_from_env`) only rank 0
        makes the folder and writes; every rank gets rank 0's path, and the device of its
        ``LOCAL_RANK`` on CUDA. The others log warnings only.
        """
        device = resolve_device(cfg.device)  # before anything is written
        rank, size = world()
        if device.type == "cuda" and size > 1:
            device = torch.device("cuda", torch.cuda.current_device())
        output_dir: str | Path | None = path or cfg.output_dir
        if output_dir is None and cfg.resume and Path(cfg.resume).is_dir():
            output_dir = cfg.resume
        if output_dir is None and size > 1:  # one timestamp, rank 0's
            output_dir = on_rank_zero(lambda: new_run_path(prefix))
        run = RunDir.create(output_dir, prefix=prefix, writes=rank == 0)
        setup_logging(run.log_file if run.writes else None, quiet=not run.writes)
        if run.writes:
            tmp = run.config.with_name(run.config.name + ".tmp")
            save_config(cfg, tmp)
            tmp.replace(run.config)
        log.info("run directory: %s", run.path)
        if size > 1:
            log.info("%d processes, data.batch_size %d is the global batch (%d a process)",
                     size, cfg.data.batch_size, cfg.data.batch_size // size)
        seed_everything(cfg.seed)
        return cls(cfg, run, device, amp=amp_settings(cfg.solver, device).enabled,
                   rank=rank, world_size=size)

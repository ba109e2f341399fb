"""The run-directory contract: which file holds what, stages, status and checkpoints.

One run directory per ``reidlab train`` / ``test`` / ``continual`` / ``adapt`` command::

    RUN/config.yaml        the resolved config
    RUN/run.json           status: mode, running | finished | failed | stopped, best model
    RUN/metrics.json       the last evaluation: {dataset: {mAP, rank1, ...}, "save_best": s}
    RUN/history.json       every evaluation: {"epochs": [{epoch, metrics, score}], ...}
    RUN/train.log          the log
    RUN/events.out.*       TensorBoard
    RUN/checkpoints/       checkpoint_*.pt (full state, resume), weights_*.pt, best_*.pt

A mode with several phases (continual tasks, adaptation rounds) puts each phase in a
*stage*, a sub-directory with the same files (``RUN/task1/``, ``RUN/round2/``), so that a
stopped sequence resumes at the stage and epoch where it stopped. A finished stage keeps
what the next one needs, its last model (``checkpoints/final_model.pt``), instead of its
full training states (:meth:`RunDir.finish_stage`). ``train``, ``sweep``,
``report`` and ``resume`` all read run directories through this module.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_PREFIX = "checkpoint"  # full training state, for resume
WEIGHTS_PREFIX = "weights"  # model weights every `solver.checkpoint_period` epochs
BEST_PREFIX = "best"  # model weights with the best validation score
FINAL_MODEL = "final_model.pt"  # a finished stage's last model, where the next one starts

STATUS_RUNNING, STATUS_FINISHED = "running", "finished"
STATUS_FAILED, STATUS_STOPPED = "failed", "stopped"


class RunFolderError(ValueError):
    """A run folder cannot be used as asked; the message names it and what to do instead."""


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically, so that a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it when it does not parse."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (or of one stage of it).

    ``writes`` is false in the processes of a distributed run other than rank 0: they read
    the run's files but make no folder and never write ``run.json``.
    """

    path: Path
    writes: bool = True

    @classmethod
    def create(cls, output_dir: str | Path | None, prefix: str = "",
               writes: bool = True) -> RunDir:
        """``output_dir``, or ``runs/<prefix><timestamp>`` when it is ``None``; made if absent
        (when it ``writes``)."""
        if output_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            output_dir = Path("runs") / f"{prefix}{stamp}"
        path = Path(output_dir)
        if writes:
            path.mkdir(parents=True, exist_ok=True)
        return cls(path, writes)

    def stage(self, name: str) -> RunDir:
        """The sub-directory of one phase (``task1``, ``round2``), made if absent."""
        return RunDir.create(self.path / name, writes=self.writes)

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def status_file(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def log_file(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def status(self) -> dict[str, Any]:
        """The content of ``run.json`` (empty when there is none)."""
        return read_json(self.status_file) if self.status_file.is_file() else {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``run.json`` (atomically; not when it does not ``writes``)
        and return the whole status."""
        status = self.status()
        status.update(fields, updated=time.time())
        if self.writes:
            write_json(self.status_file, status)
        return status

    def holds_run(self) -> bool:
        """Whether a run has written here (a status, a config or a checkpoint)."""
        return (self.status_file.is_file() or self.config.is_file()
                or bool(self.checkpoint_files(CHECKPOINT_PREFIX))
                or bool(self.checkpoint_files(BEST_PREFIX)))

    def describe(self) -> str:
        """``a finished supervised run (epoch 4 of 4)``, for messages."""
        st = self.status()
        status, mode = st.get("status", "unknown-status"), st.get("mode", "")
        epochs = f" (epoch {st['epoch']} of {st.get('epochs', '?')})" if "epoch" in st else ""
        article = "an" if status[0] in "aeiou" else "a"
        return f"{article} {status} {mode + ' ' if mode else ''}run{epochs}".replace("  ", " ")

    def running_elsewhere(self) -> int | None:
        """The pid of a live process on this host whose run this is, else None (a run
        left ``running`` by a killed process is not running)."""
        st = self.status()
        pid = st.get("pid")
        if st.get("status") != STATUS_RUNNING or not isinstance(pid, int) or pid == os.getpid():
            return None
        if st.get("host") != socket.gethostname():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def is_finished(self) -> bool:
        """Whether the run (or stage) ended normally; a stopped or failed run did not."""
        return self.status().get("status") == STATUS_FINISHED and self.metrics.is_file()

    def read_history(self) -> list[dict[str, Any]]:
        return read_json(self.history)["epochs"] if self.history.is_file() else []

    def checkpoint_files(self, prefix: str = CHECKPOINT_PREFIX) -> list[Path]:
        return sorted(self.checkpoints.glob(f"{prefix}_*.pt"))

    def has_state(self) -> bool:
        """Whether a full training state (to resume from) is saved."""
        return bool(self.checkpoint_files(CHECKPOINT_PREFIX))

    def prune_state(self) -> None:
        """Delete the full training states (kept only to resume); weights stay."""
        for path in self.checkpoint_files(CHECKPOINT_PREFIX):
            path.unlink()

    @property
    def final_model(self) -> Path:
        """``checkpoints/final_model.pt``, the last model of a finished stage."""
        return self.checkpoints / FINAL_MODEL

    def finish_stage(self, model_state: dict[str, torch.Tensor]) -> Path:
        """Keep of a finished stage what a resume needs: its last model, written
        atomically into :attr:`final_model` (``{"model": state}``), then no full training
        state (a crash in between leaves both, never neither)."""
        from reidlab.engine.checkpoint import atomic_save

        atomic_save({"model": model_state}, self.final_model)
        self.prune_state()
        return self.final_model

    def latest_checkpoint(self, prefix: str = CHECKPOINT_PREFIX) -> Path:
        """The ``prefix_*.pt`` of this run with the highest recorded iteration.

        Raises:
            FileNotFoundError: there is none, in ``checkpoints/`` or the folder itself.
        """
        for folder in (self.checkpoints, self.path):
            found = list(folder.glob(f"{prefix}_*.pt"))
            if found:
                return max(found, key=lambda p: (checkpoint_step(p), p.name))
        raise FileNotFoundError(
            f"no {prefix}_*.pt checkpoint in {self.path} or {self.checkpoints}"
        )


_STEP = re.compile(r"_(\d+)(?=[_.])")


def checkpoint_step(path: Path) -> int:
    """The training progress recorded in a checkpoint: the trainer's iteration for a full
    state; for a weights-only file, the step ignite wrote into its name (its epoch)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file ranks last, it is not chosen
        state = None
    if isinstance(state, dict) and isinstance(state.get("trainer"), dict):
        return int(state["trainer"].get("iteration", -1))
    match = _STEP.search(path.name)
    return int(match.group(1)) if match else -1


def resolve_checkpoint(path: str | Path, prefix: str = CHECKPOINT_PREFIX) -> Path:
    """``path`` itself when it is a file, else the latest ``prefix`` checkpoint of the run
    directory ``path``."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a run directory")
    return RunDir(path).latest_checkpoint(prefix)


def process_fields() -> dict[str, Any]:
    """The ``pid`` and ``host`` a running run records, so a rerun can tell it is alive."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def check_writable(path: str | Path, key: str = "output_dir") -> Path:
    """Check that the folder ``path`` can be created (or exists) and written, without
    creating it: a probe file is made and removed in its nearest existing ancestor.

    Raises:
        RunFolderError: naming ``key``, the path and the reason.
    """
    path = Path(path)
    try:
        exists = path.exists()
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{key}={str(path)!r} is not a usable path: {err}") from None
    if exists and not path.is_dir():
        raise RunFolderError(f"{key}={path} is not a folder (a file of that name exists)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise RunFolderError(f"{key}={path} cannot be made: {probe} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".reidlab-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise RunFolderError(f"{key}={path} is not writable: {err.strerror or err} "
                             f"({probe})") from None
    return path


def find_runs(root: Path) -> list[Path]:
    """Every folder under ``root`` (itself included) holding config.yaml and metrics.json.

    Raises:
        FileNotFoundError: ``root`` is not a folder, or holds no run.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder {root} does not exist")
    runs = sorted(p.parent for p in root.rglob("metrics.json")
                  if (p.parent / "config.yaml").is_file())
    if not runs:
        raise FileNotFoundError(
            f"no runs under {root}: a run is a folder holding config.yaml and metrics.json"
        )
    return runs

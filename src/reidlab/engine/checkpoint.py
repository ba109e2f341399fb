"""Checkpoint files: written atomically, read with ``weights_only=True`` and explained when
they do not load, the last K full training states kept, resume from the newest that loads.

A full training state is written to a temporary file in the same folder, flushed and
``fsync``-ed, then renamed over its final name (and the folder synced), so that a crash or
a ``SIGKILL`` at any moment leaves either the old file set or the new one, never half a
checkpoint under a final name. Full states are named ``checkpoint_<iteration>.pt``.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("reidlab")

_ZIP_MAGIC = b"PK\x03\x04"
_NUMBER = re.compile(r"_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and why."""


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` into ``path`` through a synced temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _why_unreadable(path: Path, head: bytes) -> str | None:
    """The reason a file cannot be a PyTorch checkpoint, from its bytes alone, or None."""
    if not head:
        return "the file is empty (0 bytes)"
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            return "the file is truncated (a PyTorch checkpoint whose end is missing)"
        return None
    if head[:1] == b"\x80":  # a pickle: PyTorch's legacy format
        return None
    return f"not a PyTorch checkpoint (it starts with {head[:8]!r})"


def read_state(path: str | Path, what: str = "checkpoint") -> Any:
    """Read a checkpoint (``torch.save`` file, or ``.safetensors``), tensors only.

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointError: the file is empty, truncated, not a checkpoint, or holds objects
            other than tensors and plain containers (which ``weights_only`` refuses); the
            message names the file and the reason.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{what} {path} is not a readable safetensors file: "
                                  f"{_first_line(err)}") from None
    with open(path, "rb") as fh:
        head = fh.read(16)
    reason = _why_unreadable(path, head)
    if reason is None:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            reason = ("it holds Python objects other than tensors, which are not read "
                      "(only weights files are)" if "Weights only" in str(err)
                      else f"its contents do not unpickle ({_first_line(err)})")
        except (RuntimeError, OSError, EOFError, KeyError, ValueError) as err:
            reason = f"the file is damaged or truncated ({_first_line(err)})"
    raise CheckpointError(f"{what} {path} cannot be read: {reason}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line[:200]


def state_number(path: Path) -> int:
    """The iteration in a full state's name (``checkpoint_120.pt`` -> 120); -1 if none."""
    match = _NUMBER.search(path.name)
    return int(match.group(1)) if match else -1


def newest_first(paths: list[Path]) -> list[Path]:
    """Full states ordered from the newest (highest iteration in the name) to the oldest."""
    return sorted(paths, key=lambda p: (state_number(p), p.name), reverse=True)


def load_newest(paths: list[Path], check: Any = None) -> tuple[Path, dict[str, Any]]:
    """The newest of ``paths`` that loads (and passes ``check(state)``, which raises
    :class:`CheckpointError` for a state of another run), logging each one skipped.

    Raises:
        CheckpointError: none loads; every file and its reason are named.
    """
    reasons = []
    for path in newest_first(paths):
        try:
            state = read_state(path, "full training state")
            if not isinstance(state, Mapping) or "trainer" not in state:
                raise CheckpointError(f"{path} is not a full training state (no 'trainer')")
            if check is not None:
                check(state)
        except (CheckpointError, FileNotFoundError) as err:
            log.warning("skipping %s: %s", path.name, err)
            reasons.append(str(err))
            continue
        if reasons:
            log.warning("resuming from %s, the newest full state that loads", path)
        return path, dict(state)
    if not paths:
        raise CheckpointError("no full training state (checkpoint_*.pt) to resume from")
    raise CheckpointError("no full training state loads: " + "; ".join(reasons))


def keep_newest(paths: list[Path], keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest of ``paths``; returns those deleted."""
    doomed = newest_first(paths)[keep:]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed

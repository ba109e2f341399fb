"""Stopping a training run cleanly on SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill).

The first signal asks the training loop to stop after the current iteration; the loop then
saves a full state and raises :class:`RunInterrupted`, which the CLI turns into one line
saying how to resume and the exit status 128 + signal (130 for SIGINT, 143 for SIGTERM).
A second signal stops at once (``KeyboardInterrupt``), without saving.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("reidlab")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(Exception):
    """Training stopped on a signal after saving its state.

    Attributes:
        signum: the signal received.
        run_dir: the run directory to resume.
        exit_code: 128 + signum, the shell's convention.
    """

    def __init__(self, signum: int, run_dir: Path, epoch: int, iteration: int,
                 saved: Path | None) -> None:
        self.signum, self.run_dir = signum, run_dir
        self.exit_code = 128 + signum
        where = f"the state is saved in {saved}" if saved else "no state could be saved"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} in epoch {epoch} after iteration "
            f"{iteration}; {where}; continue with: reidlab train resume={run_dir}")


class StopRequest:
    """Context manager catching SIGINT and SIGTERM while it is active (main thread only;
    elsewhere it catches nothing). ``signum`` is the first signal received, else None."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopped at once")
        self.signum = signum
        log.warning("%s received: stopping after the current iteration and saving the "
                    "state (send it again to stop at once)", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

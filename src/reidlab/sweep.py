"""``reidlab sweep``: run every experiment file of a folder, one run directory each.

Each YAML file under the folder (sorted; files named ``base.yaml`` or starting with ``_``
are shared bases, not experiments) runs as ``reidlab train`` in a subprocess, so that a
failing row is reported and the sweep goes on, into ``RUNS_DIR/<relative path without
.yaml>``. A run that finished before is skipped and a stopped one resumes from its last
checkpoint, so an interrupted sweep picks up where it stopped. A row whose training settings
equal those of a finished run (a re-ranking row, say: only ``test`` differs) is not trained
again: the finished run's best model is evaluated with the row's test settings
(``reidlab test``). After a training row ends, its full training state (kept only to resume)
is deleted unless ``keep_state`` is set; model weights stay.

A SIGINT (Ctrl-C) or SIGTERM sent to the sweep is passed on to the running row, which
saves its state and exits; the sweep then stops instead of starting the next row, reports
that row as interrupted (not failed) and exits 130 / 143. Each row runs in a session of
its own, so Ctrl-C at a terminal reaches it once, through the sweep. Running the same sweep
again resumes the interrupted row.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from reidlab.config import Config, ConfigError, load_config, to_dict
from reidlab.engine.rundir import RunDir

log = logging.getLogger("reidlab.sweep")

# Keys that do not change what is trained: runs that differ only here share one training.
NOT_TRAINING = ("test", "notebook", "output_dir", "resume")

Runner = Callable[[list[str], Path], int]


@dataclass
class Outcome:
    """What the sweep did with one experiment file."""

    name: str  # the file's path below the config folder, without .yaml
    status: str  # trained, resumed, tested, skipped, failed, interrupted
    seconds: float = 0.0
    detail: str = ""


@dataclass
class SweepResult:
    runs_dir: Path
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: int | None = None  # the signal that stopped the sweep, if one did

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


class ForwardSignals:
    """While active (main thread only), SIGINT and SIGTERM to this process are remembered
    in ``signum`` (the first one) and passed on to ``child``, the row running then."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.child: subprocess.Popen | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        child, name = self.child, signal.Signals(signum).name
        if child is not None and child.poll() is None:
            child.send_signal(signum)  # a second signal is passed on too: it stops at once
            log.warning("%s passed on to the running row, which saves its state; the sweep "
                        "stops after it", name)
        else:
            log.warning("%s received: the sweep stops before the next row", name)

    def __enter__(self) -> ForwardSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def experiment_files(config_dir: Path) -> list[Path]:
    """The experiment files under ``config_dir``, sorted; shared bases left out.

    Raises:
        FileNotFoundError: the folder does not exist or holds no experiment file.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise FileNotFoundError(f"config folder {config_dir} does not exist")
    files = sorted(p for p in config_dir.rglob("*.yaml")
                   if p.name != "base.yaml" and not p.name.startswith("_"))
    if not files:
        raise FileNotFoundError(f"no experiment YAML files under {config_dir}")
    return files


def default_runs_dir(config_dir: Path) -> Path:
    """``runs/`` plus the folder's path below ``configs/`` (or its name):
    ``configs/synthetic/notebook`` -> ``runs/synthetic/notebook``."""
    parts = Path(config_dir).resolve().parts
    if "configs" in parts:
        below = parts[len(parts) - 1 - parts[::-1].index("configs") + 1:]
        if below:
            return Path("runs", *below)
    return Path("runs") / Path(config_dir).resolve().name


def training_signature(cfg: Config) -> str:
    """The config without the keys that do not change training, as canonical JSON."""
    data: dict[str, Any] = to_dict(cfg)
    for key in NOT_TRAINING:
        data.pop(key, None)
    return json.dumps(data, sort_keys=True)


def subprocess_runner(args: list[str], log_file: Path,
                      signals: ForwardSignals | None = None) -> int:
    """Run ``reidlab ARGS`` in a fresh Python process (a session of its own), output
    appended to ``log_file``; ``signals`` passes the sweep's SIGINT / SIGTERM on to it."""
    with log_file.open("a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "reidlab.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        if signals is not None:
            signals.child = proc
        try:
            return proc.wait()
        finally:
            if signals is not None:
                signals.child = None
            if proc.poll() is None:  # the sweep itself failed: leave no row running
                proc.terminate()
                proc.wait()


def _tail(path: Path, lines: int = 4) -> str:
    if not path.is_file():
        return ""
    text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(line.strip()[-200:] for line in text[-lines:])


def _same_experiment(saved: Config, cfg: Config, trained: bool) -> bool:
    """Whether a run's saved config is the file's config; where the run lives, how it was
    resumed and (for a run that evaluated a shared model) which model it read do not count."""
    ignore = {"output_dir", "resume"}
    a, b = to_dict(saved), to_dict(cfg)
    for data in (a, b):
        for key in ignore:
            data.pop(key, None)
        if not trained:
            data["model"].pop("weights", None)
    return a == b


def sweep(
    config_dir: Path,
    runs_dir: Path | None = None,
    overrides: list[str] | None = None,
    runner: Runner | None = None,
    keep_state: bool = False,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every experiment file under ``config_dir`` (see the module docstring).

    Args:
        config_dir: the folder of experiment files.
        runs_dir: where the run directories go (default: :func:`default_runs_dir`).
        overrides: ``key.sub=value`` applied to every file (``output_dir`` is set per file).
        runner: runs one ``reidlab`` command line and returns its exit code (default:
            :func:`subprocess_runner`, which receives the sweep's signals; tests pass a
            stand-in).
        keep_state: keep each finished run's full training state (``checkpoint_*.pt``).
        echo: where the one-line progress messages go (default: the ``reidlab.sweep`` log).

    Returns:
        What happened to each file, the total time, and the signal that stopped it (rows
        after the interrupted one are not run and not listed).
    """
    with ForwardSignals() as signals:
        run_row = runner or (lambda args, log_file: subprocess_runner(args, log_file, signals))
        return _sweep(config_dir, runs_dir, overrides, run_row, keep_state, echo, signals)


def _sweep(config_dir: Path, runs_dir: Path | None, overrides: list[str] | None,
           runner: Runner, keep_state: bool, echo: Callable[[str], None] | None,
           signals: ForwardSignals) -> SweepResult:
    echo = echo or log.info
    config_dir = Path(config_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir(config_dir)
    overrides = list(overrides or [])
    for text in overrides:
        if text.split("=", 1)[0].strip() in ("output_dir", "resume"):
            raise ConfigError(f"override {text!r}: the sweep sets output_dir and resume itself")
    files = experiment_files(config_dir)
    started = time.time()
    result = SweepResult(runs_dir)
    finished_by_signature: dict[str, Path] = {}

    planned: list[tuple[Path, str, Config | None, str]] = []
    for path in files:
        name = path.relative_to(config_dir).with_suffix("").as_posix()
        try:
            loaded = load_config(path, [*overrides, f"output_dir={runs_dir / name}"])
        except (ConfigError, KeyError, ValueError) as err:
            planned.append((path, name, None, str(err)))
            continue
        planned.append((path, name, loaded, ""))
    # Rows without re-ranking first, so that a re-ranking row finds its training done.
    planned.sort(key=lambda p: (p[2] is not None and p[2].test.rerank, p[1]))

    for i, (path, name, cfg, error) in enumerate(planned, 1):
        if signals.signum is not None:
            break
        prefix = f"[{i}/{len(planned)}] {name}"
        if cfg is None:
            outcome = Outcome(name, "failed", detail=error)
            result.outcomes.append(outcome)
            echo(f"{prefix}: FAILED, config does not load: {error}")
            continue
        run_dir = runs_dir / name
        rd = RunDir(run_dir)
        signature = training_signature(cfg)
        if rd.is_finished():
            saved = load_config(rd.config)
            trained = rd.status().get("mode") != "test"
            if trained:
                finished_by_signature.setdefault(training_signature(saved), run_dir)
            note = "" if _same_experiment(saved, cfg, trained) else (
                "; its config.yaml differs from the file now, delete the run to redo it")
            result.outcomes.append(Outcome(name, "skipped", detail=note.lstrip("; ")))
            echo(f"{prefix}: finished before, skipped{note}")
            continue

        run_dir.mkdir(parents=True, exist_ok=True)
        log_file = run_dir / "sweep.log"
        base_args = [str(path), *overrides, f"output_dir={run_dir}"]
        shared = finished_by_signature.get(signature)
        if shared is not None:
            status, args = "tested", ["test", *base_args, f"model.weights={shared}"]
            how = f"evaluating the model of {shared} (same training settings)"
            rd.history.unlink(missing_ok=True)  # of an abandoned training
        elif rd.has_state():
            status, args = "resumed", ["train", *base_args, f"resume={run_dir}"]
            how = "resuming its stopped training"
        else:
            status, args = "trained", ["train", *base_args]
            how = "training"
        echo(f"{prefix}: {how} ...")
        t0 = time.time()
        code = runner(args, log_file)
        seconds = time.time() - t0
        if signals.signum is not None and (code != 0 or not rd.is_finished()):
            sig = signal.Signals(signals.signum).name
            detail = (f"{sig}, exit code {code}; run the sweep again to continue it; see "
                      f"{log_file}: {_tail(log_file, 1)}")
            result.outcomes.append(Outcome(name, "interrupted", seconds, detail))
            echo(f"{prefix}: interrupted after {seconds:.0f} s, the sweep stops ({detail})")
            break
        if code != 0 or not rd.is_finished():
            detail = f"exit code {code}; see {log_file}: {_tail(log_file)}"
            result.outcomes.append(Outcome(name, "failed", seconds, detail))
            echo(f"{prefix}: FAILED after {seconds:.0f} s ({detail})")
            continue
        if status != "tested":
            finished_by_signature.setdefault(signature, run_dir)
            if not keep_state:
                rd.prune_state()
        result.outcomes.append(Outcome(name, status, seconds))
        echo(f"{prefix}: {status} in {seconds:.0f} s")

    result.seconds = time.time() - started
    result.interrupted = signals.signum
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / "sweep.json").write_text(json.dumps({
        "config_dir": str(config_dir),
        "overrides": overrides,
        "seconds": result.seconds,
        "interrupted": signal.Signals(result.interrupted).name if result.interrupted else None,
        "rows": [vars(o) for o in result.outcomes],
    }, indent=2))
    return result


def summary(result: SweepResult) -> str:
    """One line: counts by status and the wall time."""
    counts: dict[str, int] = {}
    for o in result.outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    minutes, seconds = divmod(round(result.seconds), 60)
    return (f"sweep: {len(result.outcomes)} rows ({parts}) in {minutes} min {seconds:02d} s; "
            f"runs in {result.runs_dir}")

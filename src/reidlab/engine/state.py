"""The full training state: everything a resumed run needs to continue bit for bit.

A state holds the model, the objective (center-loss centres, learned loss weights), every
optimiser, the gradient scaler, the trainer's iteration, the best-model record, the
sampler's position and every random generator (Python, NumPy, torch CPU and CUDA). The
sampler's order and each sample's augmentation depend only on (seed, epoch, position)
(:class:`~reidlab.data.pipeline.SeededSampler`), so a run resumed from the middle of an
epoch skips the batches it already trained on and draws the same ones after them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint

from reidlab.data.pipeline import TrainData
from reidlab.engine.checkpoint import CheckpointError
from reidlab.engine.task import OptimizerSlot, ReIDTask

FORMAT = 2  # 1: ignite's Checkpoint layout (optimizer_<name> keys, no sampler or RNG)


def capture_rng() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values (``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    out: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set every generator from :func:`capture_rng`'s record."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


def samples_per_batch(data: TrainData) -> int:
    """Sampler positions per loader batch (the per-replica batch size)."""
    return len(data.sampler) // max(1, len(data.loader))  # type: ignore[arg-type]


def full_state(task: ReIDTask, slots: Sequence[OptimizerSlot], scaler: torch.amp.GradScaler,
               trainer: Engine, best: Checkpoint, data: TrainData) -> dict[str, Any]:
    """The state to save after the trainer's current iteration."""
    epoch_length = trainer.state.epoch_length or len(data.loader)  # type: ignore[arg-type]
    return {
        "format": FORMAT,
        "model": task.model.state_dict(),
        "objective": task.objective.state_dict(),
        "optimizers": {s.name: s.optimizer.state_dict() for s in slots},
        "scaler": scaler.state_dict(),
        "trainer": trainer.state_dict(),
        "best": best.state_dict(),
        "sampler": {"seed": data.sampler.seed,
                    "epoch": (trainer.state.iteration - 1) // epoch_length,
                    "position": trainer.state.iteration % epoch_length
                    * samples_per_batch(data)},
        "rng": capture_rng(),
    }


def _load_module(name: str, module: torch.nn.Module, saved: Mapping[str, Any]) -> None:
    own = set(module.state_dict())
    missing, unexpected = sorted(own - set(saved)), sorted(set(saved) - own)
    if missing or unexpected:
        raise CheckpointError(
            f"its {name} does not fit this run's (another backbone or loss?): "
            f"{len(missing)} keys missing {missing[:10]}, {len(unexpected)} unexpected "
            f"{unexpected[:10]}")
    shapes = {k: v.shape for k, v in module.state_dict().items()}
    wrong = [f"{k} {tuple(saved[k].shape)} vs {tuple(s)}" for k, s in shapes.items()
             if isinstance(saved[k], torch.Tensor) and saved[k].shape != s]
    if wrong:
        raise CheckpointError(f"its {name} has other shapes than this run's: "
                              f"{len(wrong)} tensors, e.g. {wrong[:10]}")
    module.load_state_dict(saved)  # type: ignore[arg-type]


def load_full_state(state: Mapping[str, Any], task: ReIDTask, slots: Sequence[OptimizerSlot],
                    scaler: torch.amp.GradScaler, trainer: Engine, best: Checkpoint,
                    data: TrainData) -> None:
    """Put a saved state into the run's objects (RNGs included).

    Raises:
        CheckpointError: the state belongs to another run (other model keys or shapes,
            optimisers, seed or iterations per epoch), naming what differs.
    """
    epoch_length = int(state["trainer"].get("epoch_length") or 0)
    if epoch_length != len(data.loader):  # type: ignore[arg-type]
        raise CheckpointError(
            f"it was saved with {epoch_length} iterations per epoch, the data now gives "
            f"{len(data.loader)} (the training set or batch settings changed)")  # type: ignore[arg-type]
    sampler = state.get("sampler")
    if sampler is not None and int(sampler["seed"]) != data.sampler.seed:
        raise CheckpointError(f"it was saved with seed {sampler['seed']}, this run has "
                              f"seed {data.sampler.seed}")
    optimizers = state.get("optimizers") or {
        k.removeprefix("optimizer_"): v for k, v in state.items() if k.startswith("optimizer_")}
    names = [s.name for s in slots]
    if sorted(optimizers) != sorted(names):
        raise CheckpointError(f"it has optimisers {sorted(optimizers)}, this run {names}")
    _load_module("model", task.model, state["model"])
    _load_module("objective", task.objective, state["objective"])
    for slot in slots:
        slot.optimizer.load_state_dict(optimizers[slot.name])
    scaler.load_state_dict(state["scaler"])
    trainer.load_state_dict(state["trainer"])
    best.load_state_dict(state["best"])
    if "rng" in state:
        restore_rng(state["rng"])

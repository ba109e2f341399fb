"""Runs ``reidlab`` in a subprocess of the crash tests, killing itself with SIGKILL at a
chosen point: ``python crash_driver.py THREADS KILL_AT reidlab-args...`` where KILL_AT is
``iteration:N`` (after training step N), ``eval:E`` (at the start of epoch E's validation),
``term:N`` / ``int:N`` (SIGTERM / SIGINT instead of SIGKILL after step N) or ``none``."""

import os
import signal
import sys

import torch

from reidlab.cli import main
from reidlab.engine import trainer
from reidlab.engine.validator import Validator


def _die(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def install(kill_at: str) -> None:
    kind, _, value = kill_at.partition(":")
    if kind in ("iteration", "term", "int"):
        sig = {"iteration": signal.SIGKILL, "term": signal.SIGTERM, "int": signal.SIGINT}[kind]
        real_step = trainer.make_train_step

        def make_step(*args, **kwargs):
            inner = real_step(*args, **kwargs)

            def step(engine, batch):
                out = inner(engine, batch)
                if engine.state.iteration == int(value):
                    _die(sig)
                return out
            return step
        trainer.make_train_step = make_step
    elif kind == "eval":
        real_call = Validator.__call__

        def call(self, model, epoch=0, keep_features=False):
            if epoch == int(value):
                _die()
            return real_call(self, model, epoch, keep_features)
        Validator.__call__ = call


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]))
    install(sys.argv[2])
    sys.exit(main(sys.argv[3:]))

"""Training throughput and evaluation time of a config (default: the README's main run).

Prints images/s of reidlab's training engine (decoding, augmentation, PK sampling, ignite
step with every loss term) beside a plain reference measured in the same process: the same
model and optimiser stepped on pre-made random tensors in a bare PyTorch loop, so the ratio
is the cost of the data pipeline and the engine. Then the time to evaluate the test set
(feature extraction, then ranking).

    python benchmarks/train.py [CONFIG.yaml] [--iters N] [key=value ...]
"""

from __future__ import annotations

import argparse
import time

import torch
from ignite.engine import Engine, Events

from reidlab.cli import split_config_args
from reidlab.config import load_config
from reidlab.data.pipeline import build_train_data, load_named
from reidlab.engine.context import resolve_device
from reidlab.engine.evaluator import evaluate_features, extract_features
from reidlab.engine.modes import test_sets_of
from reidlab.engine.task import Batch, build_optimizers, build_task
from reidlab.engine.trainer import make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                        help="config file (default configs/synthetic/bot.yaml) and overrides")
    parser.add_argument("--iters", type=int, default=20, help="timed training iterations")
    ns = parser.parse_intermixed_args()
    config, overrides = split_config_args(ns.args)
    cfg = load_config(config or "configs/synthetic/bot.yaml", overrides)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    amp = cfg.solver.amp and device.type == "cuda"

    # the run's own builders: data, task (model + every loss term), every optimiser
    data = build_train_data(cfg, [load_named(cfg.data, n) for n in cfg.data.train])
    task = build_task(cfg, data.num_classes).to(device)
    slots = build_optimizers(cfg, task)
    bs = cfg.data.batch_size
    warm = 3

    # reidlab: the real loader and the ignite step, `iters` timed iterations after a warm-up
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    trainer = Engine(make_train_step(task, slots, device, scaler, amp))
    times: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _tick(engine: Engine) -> None:
        times.append(time.perf_counter())

    trainer.run(data.loader, max_epochs=1, epoch_length=ns.iters + warm)
    ours = bs * ns.iters / (times[-1] - times[warm - 1])

    # plain reference: the same task and optimisers on one pre-made random batch, bare loop
    pids = torch.arange(bs, device=device) // cfg.data.num_instances % data.num_classes
    batch = Batch(torch.randn(bs, 3, cfg.data.height, cfg.data.width, device=device),
                  {"pid": pids}, torch.zeros_like(pids), torch.arange(bs, device=device))
    task.train()
    for i in range(ns.iters + warm):
        if i == warm:
            start = time.perf_counter()
        for slot in slots:
            slot.optimizer.zero_grad()
        with torch.autocast(device.type, enabled=amp):
            loss = task(batch).loss
        scaler.scale(loss).backward()
        for slot in slots:
            scaler.step(slot.optimizer)
        scaler.update()
    plain = bs * ns.iters / (time.perf_counter() - start)

    terms = "+".join(t.name for t in task.objective.terms)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {bs}, "
          f"input {cfg.data.height}x{cfg.data.width}, backbone {cfg.model.backbone}, "
          f"terms {terms}, optimisers {'+'.join(s.name for s in slots)}")
    print(f"{'training':<32}{'images/s':>10}")
    print(f"{'reidlab engine + data pipeline':<32}{ours:>10.1f}")
    print(f"{'plain loop, random tensors':<32}{plain:>10.1f}")
    print(f"{'ratio reidlab / plain':<32}{ours / plain:>10.2f}")

    for ts in test_sets_of(cfg):
        start = time.perf_counter()
        feats = extract_features(task.model, ts.loader, device, flip=cfg.test.flip,
                                 normalize=cfg.test.feat_norm, amp=amp,
                                 num_query=ts.num_query, desc=None)
        extracted = time.perf_counter() - start
        evaluate_features(feats, cfg.test)
        ranked = time.perf_counter() - start - extracted
        n = ts.num_query + len(ts.gallery)
        print(f"evaluation {ts.name}: {n} images, features {extracted:.2f} s "
              f"({n / extracted:.0f} img/s), ranking {ranked:.3f} s")


if __name__ == "__main__":
    main()

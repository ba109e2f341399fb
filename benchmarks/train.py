"""Training throughput and evaluation time of a config (default: the README's main run).

Prints images/s of reidlab's training engine (decoding, augmentation, PK sampling, ignite
step with every loss term) beside a plain reference measured in the same process: the same
model and optimiser stepped on pre-made random tensors in a bare PyTorch loop, so the ratio
is the cost of the data pipeline and the engine. The two alternate for ``--rounds``
rounds and the medians are printed, so that load from other processes on shared cores
falls on both. Then the time to evaluate the test set (feature extraction, then ranking).

    python benchmarks/train.py [CONFIG.yaml] [--iters N] [--rounds R] [key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from ignite.engine import Engine, Events

from reidlab.cli import split_config_args
from reidlab.config import load_config
from reidlab.data.pipeline import build_train_data, load_named
from reidlab.engine.compute import amp_settings, prepare_model, to_memory_format
from reidlab.engine.context import resolve_device
from reidlab.engine.evaluator import evaluate_features, extract_features
from reidlab.engine.modes import test_sets_of
from reidlab.engine.task import Batch, build_optimizers, build_task
from reidlab.engine.trainer import make_train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                        help="config file (default configs/synthetic/bot.yaml) and overrides")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations a round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of each (the median is printed)")
    ns = parser.parse_intermixed_args()
    config, overrides = split_config_args(ns.args)
    cfg = load_config(config or "configs/synthetic/bot.yaml", overrides)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    compute = amp_settings(cfg.solver, device)
    amp, dtype, cl = compute.enabled, compute.dtype, cfg.solver.channels_last

    # the run's own builders: data, task (model + every loss term), every optimiser
    data = build_train_data(cfg, [load_named(cfg.data, n) for n in cfg.data.train])
    task = build_task(cfg, data.num_classes).to(device)
    prepare_model(task.model, cfg.solver)
    slots = build_optimizers(cfg, task)
    bs = cfg.data.batch_size
    warm = 5  # more than the batches the loader workers prefetch (2 per worker)

    # reidlab: the real loader and the ignite step, `iters` timed iterations after a warm-up
    scaler = torch.amp.GradScaler(device.type, enabled=compute.scaled)
    step = make_train_step(task, slots, device, scaler, amp, dtype, cl)

    def reidlab_round() -> float:
        trainer = Engine(step)
        times: list[float] = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED,
                                  lambda _: times.append(time.perf_counter()))
        trainer.run(data.loader, max_epochs=1, epoch_length=ns.iters + warm)
        return bs * ns.iters / (times[-1] - times[warm - 1])

    # plain reference: the same task and optimisers on one pre-made random batch, bare loop
    pids = torch.arange(bs, device=device) // cfg.data.num_instances % data.num_classes
    images = to_memory_format(torch.randn(bs, 3, cfg.data.height, cfg.data.width,
                                          device=device), cl)
    batch = Batch(images,
                  {"pid": pids}, torch.zeros_like(pids), torch.arange(bs, device=device))

    def plain_round() -> float:
        task.train()
        for i in range(ns.iters + warm):
            if i == warm:
                start = time.perf_counter()
            for slot in slots:
                slot.optimizer.zero_grad()
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                loss = task(batch).loss
            scaler.scale(loss).backward()
            for slot in slots:
                scaler.step(slot.optimizer)
            scaler.update()
        return bs * ns.iters / (time.perf_counter() - start)

    # alternate the two, so that a load from other processes on shared cores hits both
    rounds = [(reidlab_round(), plain_round()) for _ in range(ns.rounds)]
    ours = statistics.median(r[0] for r in rounds)
    plain = statistics.median(r[1] for r in rounds)
    ratio = statistics.median(r[0] / r[1] for r in rounds)

    terms = "+".join(t.name for t in task.objective.terms)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {bs}, "
          f"input {cfg.data.height}x{cfg.data.width}, backbone {cfg.model.backbone}, "
          f"terms {terms}, optimisers {'+'.join(s.name for s in slots)}, "
          f"cache {cfg.data.cache}, augment on {cfg.data.augment_on}, "
          f"workers {cfg.data.num_workers}, amp {dtype if amp else 'off'}")
    print(f"{'training':<32}{'images/s':>10}")
    print(f"{'reidlab engine + data pipeline':<32}{ours:>10.1f}")
    print(f"{'plain loop, random tensors':<32}{plain:>10.1f}")
    print(f"{'ratio reidlab / plain':<32}{ratio:>10.2f}")
    per_round = ", ".join(f"{a / b:.2f}" for a, b in rounds)
    print(f"median of {ns.rounds} alternating rounds; ratios per round: {per_round}")

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

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
from reidlab.data.pipeline import build_test_sets, build_train_data, load_named
from reidlab.engine.evaluator import build_evaluator
from reidlab.engine.optim import build_optimizer
from reidlab.engine.trainer import make_train_step
from reidlab.losses.objective import build_objective, uses_arcface
from reidlab.models.build import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                        help="config file (default configs/synthetic/bot.yaml) and overrides")
    parser.add_argument("--iters", type=int, default=20, help="timed training iterations")
    ns = parser.parse_intermixed_args()
    config, overrides = split_config_args(ns.args)
    cfg = load_config(config or "configs/synthetic/bot.yaml", overrides)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    datasets = [load_named(cfg.data, n) for n in cfg.data.train]
    data = build_train_data(cfg, datasets)
    model = build_model(cfg.model, data.num_classes, arcface=uses_arcface(cfg.loss.name),
                        loss=cfg.loss).to(device)
    objective = build_objective(cfg.loss, data.num_classes, model.feat_dim).to(device)
    optimizer = build_optimizer(model.named_parameters(), cfg.solver)
    bs = cfg.data.batch_size
    warm = 3

    # reidlab: the real loader and the ignite step, `iters` timed iterations after a warm-up
    step = make_train_step(model, objective, optimizer, device)
    trainer = Engine(step)
    times: list[float] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _tick(engine: Engine) -> None:
        times.append(time.perf_counter())

    trainer.run(data.loader, max_epochs=1, epoch_length=ns.iters + warm)
    ours = bs * ns.iters / (times[-1] - times[warm - 1])

    # plain reference: the same model and optimiser on random tensors in a bare loop
    x = torch.randn(bs, 3, cfg.data.height, cfg.data.width, device=device)
    y = torch.arange(bs, device=device) // cfg.data.num_instances % data.num_classes
    ce = torch.nn.CrossEntropyLoss()
    model.train()
    for i in range(ns.iters + warm):
        if i == warm:
            start = time.perf_counter()
        out = model(x, y)
        loss = ce(out.logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    plain = bs * ns.iters / (time.perf_counter() - start)

    print(f"device {device}, threads {torch.get_num_threads()}, batch {bs}, "
          f"input {cfg.data.height}x{cfg.data.width}, backbone {cfg.model.backbone}")
    print(f"{'training':<32}{'images/s':>10}")
    print(f"{'reidlab engine + data pipeline':<32}{ours:>10.1f}")
    print(f"{'plain loop, random tensors':<32}{plain:>10.1f}")
    print(f"{'ratio reidlab / plain':<32}{ours / plain:>10.2f}")

    test_names = cfg.data.test or cfg.data.train
    for ts in build_test_sets(cfg, [load_named(cfg.data, n) for n in test_names]):
        engine, metric = build_evaluator(model, ts.num_query, cfg.test, device, amp=False)
        start = time.perf_counter()
        engine.run(ts.loader)
        extracted = time.perf_counter() - start
        metric.compute()
        ranked = time.perf_counter() - start - extracted
        n = ts.num_query + len(ts.gallery)
        print(f"evaluation {ts.name}: {n} images, features {extracted:.2f} s "
              f"({n / extracted:.0f} img/s), ranking {ranked:.3f} s")


if __name__ == "__main__":
    main()

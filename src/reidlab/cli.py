"""The ``reidlab`` command: train, test, synth, data info, models, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from reidlab.config import ConfigError, load_config


def split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG.yaml] [key=value ...]``: the first argument without ``=`` is the config."""
    config = None
    overrides = []
    for arg in args:
        if "=" in arg:
            overrides.append(arg)
        elif config is None:
            config = arg
        else:
            raise ConfigError(f"unexpected argument {arg!r}: give one CONFIG and key=value pairs")
    return config, overrides


def cmd_train(ns: argparse.Namespace) -> int:
    from reidlab.engine.run import format_table, train

    cfg = load_config(*split_config_args(ns.args))
    result = train(cfg)
    print(format_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_test(ns: argparse.Namespace) -> int:
    from reidlab.engine.run import format_table, test

    cfg = load_config(*split_config_args(ns.args))
    result = test(cfg, keep_features=ns.visualize > 0)
    if ns.visualize > 0:
        from reidlab.engine.pictures import write_pictures

        for page in write_pictures(result, cfg, ns.visualize):
            print(f"pictures: {page}")
    print(format_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_synth(ns: argparse.Namespace) -> int:
    from reidlab.data.synthetic import generate

    out = generate(Path(ns.out_dir), num_ids=ns.ids, seed=ns.seed, domain=ns.domain)
    print(f"synthetic dataset written to {out}")
    return 0


def cmd_data_info(ns: argparse.Namespace) -> int:
    from reidlab.data.datasets import dataset_info, format_info_table

    info = dataset_info(ns.dataset, ns.root)
    print(json.dumps(info, indent=2) if ns.json else format_info_table(info))
    return 0


def cmd_models(ns: argparse.Namespace) -> int:
    from reidlab.models.backbones import check_checkpoint, parameter_counts

    if ns.load:
        name, checkpoint = ns.load
        report = check_checkpoint(name, checkpoint)
        print(f"missing ({len(report.missing)}): {', '.join(report.missing) or '-'}")
        print(f"unexpected ({len(report.unexpected)}): {', '.join(report.unexpected) or '-'}")
        print(f"zero-filled ({len(report.zero_filled)}): {', '.join(report.zero_filled) or '-'}")
        print("ok" if report.ok else "NOT OK: some backbone weights are left uninitialised")
        return 0 if report.ok else 1
    counts = parameter_counts()
    if ns.json:
        print(json.dumps(counts, indent=2))
    else:
        width = max(len(n) for n in counts)
        for name, count in counts.items():
            print(f"{name:<{width}}  {count:>12,}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model: reidlab train [CONFIG.yaml] [key.sub=value ...]")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("test", help="evaluate: reidlab test CONFIG.yaml model.weights=RUN ...")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.add_argument("--visualize", type=int, default=0, metavar="K",
                   help="write ranked-list pictures for K queries and a CMC curve")
    p.set_defaults(fn=cmd_test)

    p = sub.add_parser("synth", help="write the synthetic dataset in Market-1501 layout")
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ids", type=int, default=160)
    p.add_argument("--domain", default="a")
    p.set_defaults(fn=cmd_synth)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("info", help="ids / images / cameras per split")
    q.add_argument("--dataset", required=True)
    q.add_argument("--root", required=True)
    q.add_argument("--json", action="store_true")
    q.set_defaults(fn=cmd_data_info)

    p = sub.add_parser("models", help="list backbones or check a pretrained checkpoint")
    p.add_argument("--json", action="store_true")
    p.add_argument("--load", nargs=2, metavar=("NAME", "CHECKPOINT"))
    p.set_defaults(fn=cmd_models)

    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.fn(ns))
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"reidlab: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

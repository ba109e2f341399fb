"""The ``reidlab`` command: train, test, synth, data info, models, report, sweep."""

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
    from reidlab.engine.modes import format_table, run

    cfg = load_config(*split_config_args(ns.args))
    result = run(cfg)
    print(format_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return 0


def cmd_test(ns: argparse.Namespace) -> int:
    from reidlab.engine.modes import format_table, test

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
    if ns.json:  # the papers' three columns; junk and distractors are in the text table
        keys = ("ids", "images", "cameras")
        print(json.dumps({s: {k: v[k] for k in keys} for s, v in info.items()}, indent=2))
    else:
        print(format_info_table(info))
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


def cmd_report(ns: argparse.Namespace) -> int:
    from reidlab.report import build_report

    print(build_report(Path(ns.runs_dir), markdown=ns.markdown))
    return 0


def cmd_sweep(ns: argparse.Namespace) -> int:
    from reidlab.report import build_report
    from reidlab.sweep import summary, sweep

    result = sweep(Path(ns.config_dir), Path(ns.out) if ns.out else None, ns.overrides,
                   keep_state=ns.keep_state, echo=lambda line: print(line, flush=True))
    print(summary(result))
    for outcome in result.failed:
        print(f"failed: {outcome.name}: {outcome.detail}")
    try:
        print(build_report(result.runs_dir, markdown=ns.markdown))
    except FileNotFoundError as err:
        print(f"reidlab: no table: {err}", file=sys.stderr)
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reidlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train",
                       help="train a model: reidlab train [CONFIG.yaml] [key.sub=value ...]")
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

    p = sub.add_parser("report", help="the notebook table from run directories: reidlab "
                                      "report RUNS_DIR [--markdown]")
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="folder searched recursively for runs (config.yaml + metrics.json)")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("sweep", help="train every YAML under a folder, then report: reidlab "
                                     "sweep CONFIG_DIR [--out RUNS_DIR] [key.sub=value ...]")
    p.add_argument("config_dir", metavar="CONFIG_DIR",
                   help="folder of experiment YAML files (base.yaml and _*.yaml are skipped)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="overrides applied to every file")
    p.add_argument("--out", metavar="RUNS_DIR",
                   help="where the runs go (default: runs/ + the folder's path below configs/)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep each finished run's full training state (only needed to resume)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(fn=cmd_sweep)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    # argparse cannot take positionals after an option (`sweep DIR --out X a=b`); key=value
    # pairs left over go to the command's overrides, where it has them.
    if extra:
        if not hasattr(ns, "overrides") or not all("=" in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.overrides = [*ns.overrides, *extra]
    try:
        return int(ns.fn(ns))
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"reidlab: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``reidlab`` command: train, test, synth, data info, models, report, sweep."""

from __future__ import annotations

import argparse
import json
import os
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


def train_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``split_config_args``; with ``resume=RUN`` and no CONFIG, RUN's own config.yaml is
    the config (so ``reidlab train resume=RUN`` continues RUN with its settings)."""
    config, overrides = split_config_args(args)
    resume = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == "resume"]
    if config is None and resume and resume[-1]:
        from reidlab.engine.preflight import resume_source

        saved = resume_source(resume[-1])[0] / "config.yaml"
        if saved.is_file():
            config = str(saved)
    return config, overrides


def is_rank_zero() -> bool:
    """Whether this process prints results: not one of the other ranks of a ``torchrun``
    launch (which sets ``RANK``)."""
    return os.environ.get("RANK", "0") == "0"


def cmd_train(ns: argparse.Namespace) -> int:
    from reidlab.engine.modes import format_table, run

    cfg = load_config(*train_config_args(ns.args))
    result = run(cfg)
    if is_rank_zero():
        print(format_table(result.metrics))
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_adapt(ns: argparse.Namespace) -> int:
    from reidlab.adapt.ssg import format_rounds_table
    from reidlab.engine.modes import run

    config, overrides = split_config_args(ns.args)
    result = run(load_config(config, ["mode=adapt", *overrides]))
    if is_rank_zero():
        print(format_rounds_table(result.history))
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_continual(ns: argparse.Namespace) -> int:
    from reidlab.continual.record import CONTINUAL_JSON, format_record
    from reidlab.engine.modes import run
    from reidlab.engine.rundir import read_json

    config, overrides = train_config_args(ns.args)
    result = run(load_config(config, ["mode=continual", *overrides]))
    if is_rank_zero():
        print(format_record(read_json(result.run_dir / CONTINUAL_JSON)))
        print(f"run directory: {result.run_dir}")
    return 0


def cmd_dec_digits(ns: argparse.Namespace) -> int:
    from reidlab.adapt.digits import format_digits_table, run_dec_digits

    record = run_dec_digits(Path(ns.out), seed=ns.seed)
    print(format_digits_table(record))
    print(f"written: {Path(ns.out) / 'assignments.npz'}, {Path(ns.out) / 'dec_digits.json'}")
    return 0


def cmd_center_demo(ns: argparse.Namespace) -> int:
    from reidlab.adapt.center_demo import run_center_demo

    record = run_center_demo(Path(ns.out), seed=ns.seed)
    for name, values in record["runs"].items():
        print(f"{name:<32} intra/inter distance ratio {values['intra_inter_ratio']:.3f}, "
              f"held-out accuracy {100 * values['test_accuracy']:.1f}%")
    print(f"picture: {Path(ns.out) / 'center_loss.png'}")
    return 0


def cmd_test(ns: argparse.Namespace) -> int:
    from reidlab.engine.modes import format_table, test

    cfg = load_config(*split_config_args(ns.args))
    result = test(cfg, keep_features=ns.visualize > 0)
    if not is_rank_zero():
        return 0
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


def cmd_data_check(ns: argparse.Namespace) -> int:
    from reidlab.data.check import check_dataset
    from reidlab.data.datasets import load_dataset

    report = check_dataset(load_dataset(ns.dataset, ns.root), workers=ns.workers)
    for line in report.lines():
        print(line)
    print(f"{report.dataset}: {report.images:,} images checked, "
          f"{len(report.problems)} problem{'' if len(report.problems) == 1 else 's'}")
    return 0 if report.ok else 1


def cmd_extract(ns: argparse.Namespace) -> int:
    from reidlab.inference.extract import extract

    cfg = load_config(*split_config_args(ns.args))
    result = extract(cfg, ns.images, ns.out)
    labels = "with pids and camids" if result.pids is not None else "without ids"
    print(f"{len(result.paths)} features of dimension {result.feats.shape[1]} ({labels}) "
          f"written to {ns.out}")
    return 0


def cmd_search(ns: argparse.Namespace) -> int:
    from reidlab.inference.search import format_results, search

    config, overrides = split_config_args(ns.args)
    # Without a CONFIG the gallery file's own config (and checkpoint) embeds the queries.
    cfg = load_config(config, overrides) if config else None
    results = search(ns.gallery, ns.query, cfg, top=ns.top, overrides=overrides)
    print(format_results(results))
    if ns.html:
        from reidlab.inference.page import write_page

        print(f"page: {write_page(results, ns.html)}")
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from reidlab.inference.export import export_from_config

    cfg = load_config(*split_config_args(ns.args))
    result = export_from_config(cfg, ns.onnx, images=ns.images, fp16=ns.fp16,
                                input_type=ns.input)
    print(f"wrote {result.path}: input images ({ns.input}, RGB) of shape (B, 3, "
          f"{cfg.data.height}, {cfg.data.width}), output features; onnxruntime matches "
          f"PyTorch within {result.max_abs_diff:.2g} (limit {result.tolerance:g}) on "
          f"{result.images} images")
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
    import signal

    from reidlab.report import build_report
    from reidlab.sweep import summary, sweep

    result = sweep(Path(ns.config_dir), Path(ns.out) if ns.out else None, ns.overrides,
                   keep_state=ns.keep_state, echo=lambda line: print(line, flush=True))
    print(summary(result))
    for outcome in result.failed:
        print(f"failed: {outcome.name}: {outcome.detail}")
    if result.interrupted is not None:
        print(f"reidlab: sweep stopped by {signal.Signals(result.interrupted).name}; run it "
              "again to continue", file=sys.stderr)
        return 128 + result.interrupted
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

    p = sub.add_parser("adapt", help="unsupervised domain adaptation (SSG rounds): reidlab "
                                     "adapt CONFIG.yaml [key.sub=value ...]")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.set_defaults(fn=cmd_adapt)

    p = sub.add_parser("continual", help="a sequence of tasks, one after another (finetune, "
                                         "LwF, joint): reidlab continual CONFIG.yaml "
                                         "[key.sub=value ...]")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.set_defaults(fn=cmd_continual)

    p = sub.add_parser("dec-digits", help="DEC against k-means on scikit-learn's digits")
    p.add_argument("--out", default="runs/dec-digits", metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_dec_digits)

    p = sub.add_parser("center-demo", help="2-D features with and without center loss")
    p.add_argument("--out", default="runs/center-demo", metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_center_demo)

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
    q = data_sub.add_parser("check", help="open every image and check the layout; lists "
                                          "each bad file (exit 1 if any)")
    q.add_argument("--dataset", required=True)
    q.add_argument("--root", required=True)
    q.add_argument("--workers", type=int, default=None, help="threads opening images")
    q.set_defaults(fn=cmd_data_check)

    p = sub.add_parser("extract", help="test features of images: reidlab extract CONFIG.yaml "
                                       "model.weights=RUN --images DIR_OR_CSV --out F.safetensors")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.add_argument("--images", required=True, metavar="DIR_OR_CSV",
                   help="an image, a folder (searched recursively) or a CSV path,pid[,camid]")
    p.add_argument("--out", required=True, metavar="FEATURES.safetensors")
    p.set_defaults(fn=cmd_extract)

    p = sub.add_parser("search", help="rank a saved gallery for new images: reidlab search "
                                      "--gallery F.safetensors --query IMAGE_OR_DIR")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                   help="config and model.weights for the queries (default: the gallery's)")
    p.add_argument("--gallery", required=True, metavar="FEATURES.safetensors")
    p.add_argument("--query", required=True, metavar="IMAGE_OR_DIR")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--html", metavar="OUT.html", help="write a result page with thumbnails")
    p.set_defaults(fn=cmd_search)

    p = sub.add_parser("export", help="the inference model as ONNX, checked with onnxruntime: "
                                      "reidlab export CONFIG.yaml model.weights=RUN --onnx F")
    p.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx")
    p.add_argument("--fp16", action="store_true", help="half-precision network")
    p.add_argument("--input", choices=("uint8", "float32"), default="uint8",
                   help="input images: uint8 in [0, 255] (default) or float32 in [0, 1]")
    p.add_argument("--images", metavar="DIR_OR_CSV", help="images for the parity check "
                   "(default: the query images of the config's first test dataset)")
    p.set_defaults(fn=cmd_export)

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


#: Failures a user can cause and fix (config, data, image, checkpoint, disk, run folder):
#: one line, exit status 2. Anything else is a bug: one line too, exit status 1.
EXPECTED_ERRORS = (ValueError, KeyError, OSError, FloatingPointError)


def one_line(err: BaseException) -> str:
    """An exception's message on one line (a KeyError's without its quotes)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def _leave_process_group(together: bool = False) -> None:
    """Leave the process group a ``torchrun`` run joined (without importing torch for the
    commands that never did); ``together``: after a barrier (the command succeeded)."""
    if "torch.distributed" in sys.modules:
        from reidlab.engine.collectives import leave

        leave(together)


def main(argv: list[str] | None = None) -> int:
    """Run one ``reidlab`` command. Every expected failure prints ``reidlab: error: ...``
    on one line; ``--debug`` (anywhere on the line) shows the traceback instead."""
    from reidlab.engine.interrupt import RunInterrupted

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    parser = build_parser()
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (anywhere on the line)")
    ns, extra = parser.parse_known_args(args)
    # argparse takes no positionals after an option (`test C --visualize 4 a=b`): key=value
    # pairs left over go to the command's config arguments or overrides.
    if extra:
        target = "args" if hasattr(ns, "args") else "overrides"
        if not hasattr(ns, target) or not all("=" in e and not e.startswith("-")
                                               for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(ns, target, [*getattr(ns, target), *extra])
    try:
        code = int(ns.fn(ns))
        _leave_process_group(together=code == 0)
        return code
    except RunInterrupted as err:
        if debug:
            raise
        print(f"reidlab: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        print("reidlab: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"reidlab: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a bug: still one line, the traceback on demand
        if debug:
            raise
        print(f"reidlab: error: {type(err).__name__}: {one_line(err)} (unexpected; rerun "
              "with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        _leave_process_group()


if __name__ == "__main__":
    sys.exit(main())

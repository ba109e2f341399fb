"""mAP of a run on several gloo processes against the same run in one process (CPU).

Trains the config three times from scratch: in one process with 1 thread (the reference),
under ``torchrun --nproc_per_node N`` (1 thread each; the same global batch), and in one
process with 2 threads, whose only difference from the reference is float round-off in the
kernels. Runs that differ only by round-off part ways after a few steps (ties in
max-pooling and in hard mining), so the third run is the noise floor the distributed run's
difference is to be read against. Prints mAP / rank-1 and wall time of each, and each
one's difference from the reference in points.

    python benchmarks/distributed.py [CONFIG.yaml] [--procs N] [--out DIR] [key=value ...]

The default is the README's main run shortened to 12 epochs (about 4 minutes a run on 2
cores); the tiny runs of the tests are too small for their mAP to mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHORT = ["solver.epochs=12", "solver.milestones=[8, 10]", "solver.eval_period=12",
         "solver.checkpoint_period=12", "test.raw_pixel_baseline=false"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(prefix: list[str], args: list[str], out: Path, threads: int) -> tuple[dict, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    res = subprocess.run([*prefix, "train", *args, f"output_dir={out}"], env=env,
                         capture_output=True, text=True)
    seconds = time.time() - started
    if res.returncode != 0:
        sys.exit(f"{' '.join(prefix)} failed:\n{res.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return next(v for v in metrics.values() if isinstance(v, dict)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                        help="config (default configs/synthetic/bot.yaml, 12 epochs) and "
                             "overrides")
    parser.add_argument("--procs", type=int, default=2, help="processes of the torchrun run")
    parser.add_argument("--out", help="where the three runs go (default: a temporary folder)")
    ns = parser.parse_intermixed_args()
    args = ns.args if any(a.endswith(".yaml") for a in ns.args) else [
        "configs/synthetic/bot.yaml", *SHORT, *ns.args]
    out = Path(ns.out or tempfile.mkdtemp(prefix="reidlab-distributed-"))
    one = [sys.executable, "-m", "reidlab"]
    many = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ns.procs),
            "--master_addr", "127.0.0.1", "--master_port", str(_port()), "-m", "reidlab"]
    runs = [("1 process, 1 thread (reference)", one, "one", 1),
            (f"{ns.procs} gloo processes, 1 thread each", many, "many", 1),
            ("1 process, 2 threads (round-off only)", one, "one-2threads", 2)]
    rows = []
    for name, prefix, folder, threads in runs:
        print(f"training: {name} ...", flush=True)
        rows.append((name, *_train(prefix, args, out / folder, threads)))
    ref = rows[0][1]
    print(f"\n{' '.join(args)}\n")
    print(f"{'run':<40} {'mAP':>6} {'rank1':>6} {'dmAP':>6} {'drank1':>6} {'time':>7}")
    for name, m, seconds in rows:
        print(f"{name:<40} {100 * m['mAP']:6.2f} {100 * m['rank1']:6.2f} "
              f"{100 * (m['mAP'] - ref['mAP']):+6.2f} {100 * (m['rank1'] - ref['rank1']):+6.2f} "
              f"{seconds:6.0f}s")
    print(f"\nruns in {out}")


if __name__ == "__main__":
    main()

"""`reidlab sweep` (skip, resume, shared training, failing rows) and the shipped grids."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import reidlab.models.backbones  # noqa: F401 (registers the backbones)
from reidlab.cli import main
from reidlab.config import load_config, save_config
from reidlab.engine.rundir import RunDir
from reidlab.losses.objective import build_objective, loss_tokens
from reidlab.registry import BACKBONES
from reidlab.sweep import default_runs_dir, experiment_files, sweep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml")  # rows, not their shared bases
                     if p.name != "base.yaml" and not p.name.startswith("_"))
MARKET_ROWS = sorted(p for p in (CONFIGS / "market1501" / "notebook").rglob("*.yaml")
                     if p.name != "base.yaml")  # base.yaml: the notebook code's shared settings
OTHER_ROWS = sorted([*(CONFIGS / "dukemtmc").glob("*.yaml"), *(CONFIGS / "msmt17").glob("*.yaml")])
TWIN = CONFIGS / "synthetic" / "notebook"


# ---------------------------------------------------------------- the shipped configs


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_names_a_backbone_and_a_valid_loss(path):
    cfg = load_config(path)
    assert cfg.model.backbone in BACKBONES, f"{path}: unknown backbone {cfg.model.backbone}"
    loss_tokens(cfg.loss.name)
    objective = build_objective(cfg.loss, num_classes=4, feat_dim=8)
    assert objective.terms


def test_the_notebook_grid_is_complete():
    """26 Market-1501 rows (resnet50 01-17 as listed, resnet101 and resnext101_32x8d 01-06),
    the four re-ranking rows, the DukeMTMC-reID and MSMT17 baselines."""
    rows = {(c.model.backbone, c.notebook.id, c.test.rerank)
            for c in (load_config(p) for p in MARKET_ROWS)}
    train = {(b, i) for b, i, rerank in rows if not rerank}
    r50 = {i for b, i in train if b.endswith("resnet50")}
    assert r50 == {"01/02", "03", "04", "05", "07", "08", "09", "11", "12", "13", "14", "15",
                   "16", "17"}
    for family in ("resnet101", "resnext101_32x8d"):
        ids = sorted(i for b, i in train if b.endswith(family))
        assert ids == ["01", "02", "03", "04", "05", "06"], family
    assert len(train) == 26
    assert {(b, i) for b, i, rerank in rows if rerank} == {
        ("resnet50", "02"), ("ibn_a_resnet50", "12"), ("ibn_a_resnet101", "03"),
        ("ibn_a_resnext101_32x8d", "03")}
    for path, dataset in ((CONFIGS / "dukemtmc" / "bot_r50.yaml", "dukemtmc"),
                          (CONFIGS / "msmt17" / "bot_r50.yaml", "msmt17")):
        cfg = load_config(path)
        assert cfg.data.train == [dataset] and cfg.notebook.map and cfg.notebook.rank1


@pytest.mark.parametrize("path", MARKET_ROWS, ids=lambda p: p.stem)
def test_market_row_states_its_row_and_number(path):
    cfg = load_config(path)
    nb = cfg.notebook
    assert nb.id and nb.tricks and nb.map and nb.rank1 and nb.mean
    header = path.read_text().split("_base_")[0]
    assert f"row {cfg.model.backbone} {nb.id}" in header
    assert f"mAP {nb.map:.1f}, rank-1 {nb.rank1:.1f}" in header
    assert cfg.data.train == ["market1501"] and nb.dataset is None
    assert nb.commit and len(nb.commit) == 40 and f"commit {nb.commit[:7]}" in header


@pytest.mark.parametrize("path", [*MARKET_ROWS, *OTHER_ROWS], ids=lambda p: p.stem)
def test_rows_train_the_notebook_codes_settings(path):
    """What every row's code computed (base.yaml), whatever the row changes on top."""
    cfg = load_config(path)
    assert "center" in cfg.loss.name and cfg.loss.center_distance == "l2"
    assert cfg.loss.triplet_normalize and cfg.loss.center_weight == 0.0005
    assert (cfg.model.layout, cfg.model.ibn_b_blocks, cfg.model.pretrained_partial) == (
        "torchvision", "all", True)
    assert cfg.seed == 1024 and cfg.model.pretrained.startswith("https://download.pytorch.org")
    if cfg.test.rerank:
        assert (cfg.test.k1, cfg.test.k2, cfg.test.rerank_distance) == (24, 6, "euclidean")


def _tricks(cfg) -> dict:
    """The settings a notebook row changes, to compare a row with its synthetic twin."""
    return {"backbone": cfg.model.backbone, "pooling": cfg.model.pooling, "neck": cfg.model.neck,
            "loss": yaml.safe_dump(cfg.loss.model_dump()), "batch": cfg.data.batch_size,
            "instances": cfg.data.num_instances, "rerank": cfg.test.rerank,
            "test": (cfg.test.k1, cfg.test.k2, cfg.test.rerank_distance),
            "layout": (cfg.model.layout, cfg.model.ibn_b_blocks),
            "notebook": (cfg.notebook.id, cfg.notebook.tricks, cfg.notebook.map,
                         cfg.notebook.rank1, cfg.notebook.mean)}


@pytest.mark.parametrize("real, twin", [
    *[(p, TWIN / "market1501" / p.relative_to(CONFIGS / "market1501" / "notebook"))
      for p in MARKET_ROWS],
    *[(p, TWIN / p.parent.name / p.name) for p in OTHER_ROWS],
], ids=lambda p: "/".join(p.parts[-2:]))
def test_synthetic_twin_mirrors_its_row(real, twin):
    a, b = load_config(real), load_config(twin)
    assert _tricks(a) == _tricks(b)
    assert b.data.train == ["synthetic"] and b.model.pretrained is None
    assert b.notebook.dataset == a.data.train[0]
    assert (b.data.height, b.data.width, b.model.width) == (64, 32, 16)


def test_twin_grid_has_no_extra_rows():
    twins = {p.relative_to(TWIN / "market1501") for p in (TWIN / "market1501").rglob("*.yaml")}
    assert twins == {p.relative_to(CONFIGS / "market1501" / "notebook") for p in MARKET_ROWS}
    files = experiment_files(TWIN)
    assert TWIN / "base.yaml" not in files and len(files) == len(MARKET_ROWS) + len(OTHER_ROWS)


# ---------------------------------------------------------------- sweep logic (stand-in runner)


def write_grid(folder: Path, files: dict[str, dict]) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data))
    return folder


class FakeRunner:
    """Stands in for the subprocess: records the command lines and writes what `reidlab
    train` / `reidlab test` would (config.yaml, metrics.json, run.json, history.json); a
    config whose notebook tricks say "fail" exits with 1."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], log_file: Path) -> int:
        self.calls.append(args)
        command, config, *overrides = args
        cfg = load_config(config, overrides)
        if cfg.notebook.tricks == "fail":
            log_file.write_text("Traceback ...\nRuntimeError: boom\n")
            return 1
        run = Path(cfg.output_dir)
        save_config(cfg, run / "config.yaml")
        (run / "metrics.json").write_text(json.dumps(
            {"synthetic-a": {"mAP": 0.5, "rank1": 0.6, "mean": 0.55}}))
        if command == "train":
            (run / "checkpoints").mkdir(exist_ok=True)
            (run / "checkpoints" / "checkpoint_3.pt").write_text("state")
            (run / "checkpoints" / "best_model_3_mean=0.5500.pt").write_text("weights")
            (run / "history.json").write_text(json.dumps({"epochs": [], "seconds": 1.0}))
        RunDir(run).update_status(mode="supervised" if command == "train" else "test",
                                  status="finished")
        return 0


GRID = {
    "base.yaml": {"solver": {"epochs": 3}},
    "a/resnet50_01.yaml": {"_base_": "../base.yaml", "notebook": {"id": "01"}},
    "a/rerank/resnet50_02.yaml": {"_base_": "../resnet50_01.yaml", "test": {"rerank": True},
                                  "notebook": {"id": "02"}},
    "a/resnet50_05.yaml": {"_base_": "../base.yaml", "loss": {"metric_loss_weight": 2.0},
                           "notebook": {"id": "05", "tricks": "fail"}},
    "b/_shared.yaml": {"seed": 3},
    "b/resnet101_01.yaml": {"model": {"backbone": "resnet101"}, "notebook": {"id": "01"}},
}


def test_sweep_shares_training_skips_and_goes_on_past_failures(tmp_path):
    grid = write_grid(tmp_path / "grid", GRID)
    out = tmp_path / "runs"
    runner = FakeRunner()
    messages: list[str] = []
    result = sweep(grid, out, ["data.height=64"], runner=runner, echo=messages.append)

    status = {o.name: o.status for o in result.outcomes}
    assert status == {"a/resnet50_01": "trained", "a/resnet50_05": "failed",
                      "b/resnet101_01": "trained", "a/rerank/resnet50_02": "tested"}
    # Training rows first in sorted order, the re-ranking row last, reading row 01's model.
    assert [o.name for o in result.outcomes][-1] == "a/rerank/resnet50_02"
    test_call = runner.calls[-1]
    assert test_call[0] == "test" and f"model.weights={out / 'a/resnet50_01'}" in test_call
    assert all("data.height=64" in call for call in runner.calls)
    assert f"output_dir={out / 'b/resnet101_01'}" in runner.calls[2]
    failed = result.failed[0]
    assert "exit code 1" in failed.detail and "RuntimeError: boom" in failed.detail
    assert any("FAILED" in m for m in messages)
    # The full training state is pruned after a finished training, the weights stay.
    assert not list((out / "a/resnet50_01/checkpoints").glob("checkpoint_*.pt"))
    assert list((out / "a/resnet50_01/checkpoints").glob("best_*.pt"))
    saved = json.loads((out / "sweep.json").read_text())
    assert [r["status"] for r in saved["rows"]] == [o.status for o in result.outcomes]

    # Run again: finished rows are skipped, the failed one is tried again.
    runner.calls.clear()
    again = sweep(grid, out, ["data.height=64"], runner=runner, echo=messages.append)
    assert {o.name: o.status for o in again.outcomes} == {
        "a/resnet50_01": "skipped", "a/resnet50_05": "failed", "b/resnet101_01": "skipped",
        "a/rerank/resnet50_02": "skipped"}
    assert len(runner.calls) == 1
    assert all(o.detail == "" for o in again.outcomes if o.status == "skipped")

    # A changed file is reported, not silently rerun.
    runner.calls.clear()
    changed = sweep(grid, out, ["data.height=32"], runner=runner, echo=messages.append)
    assert all("differs" in o.detail for o in changed.outcomes if o.status == "skipped")


def test_sweep_resumes_a_stopped_run(tmp_path):
    grid = write_grid(tmp_path / "grid", {"r.yaml": {"notebook": {"id": "01"}}})
    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint_2.pt").write_text("state")
    (run / "metrics.json").write_text("{}")  # written by an evaluation before the stop
    (run / "history.json").write_text(json.dumps({"epochs": []}))
    RunDir(run).update_status(mode="supervised", status="stopped")
    runner = FakeRunner()
    result = sweep(grid, tmp_path / "runs", runner=runner, echo=lambda m: None)
    assert [o.status for o in result.outcomes] == ["resumed"]
    assert f"resume={run}" in runner.calls[0]


def test_sweep_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sweep(tmp_path / "missing", tmp_path / "runs", runner=FakeRunner())
    write_grid(tmp_path / "only-base", {"base.yaml": {}})
    with pytest.raises(FileNotFoundError, match="no experiment"):
        sweep(tmp_path / "only-base", tmp_path / "runs", runner=FakeRunner())
    grid = write_grid(tmp_path / "grid", {"r.yaml": {}, "bad.yaml": {"solver": {"epoch": 3}}})
    with pytest.raises(ValueError, match="output_dir"):
        sweep(grid, tmp_path / "runs", ["output_dir=x"], runner=FakeRunner())
    result = sweep(grid, tmp_path / "runs", runner=FakeRunner(), echo=lambda m: None)
    assert {o.name: o.status for o in result.outcomes} == {"bad": "failed", "r": "trained"}
    assert "solver.epoch" in result.failed[0].detail


def test_a_signal_during_a_row_that_still_finishes_stops_before_the_next(tmp_path):
    grid = write_grid(tmp_path / "grid", {"a.yaml": {}, "b.yaml": {}})
    fake = FakeRunner()

    def signalled(args: list[str], log_file: Path) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # caught by the sweep while a row runs
        return fake(args, log_file)

    before = signal.getsignal(signal.SIGTERM)
    result = sweep(grid, tmp_path / "runs", runner=signalled, echo=lambda m: None)
    assert result.interrupted == signal.SIGTERM
    assert [(o.name, o.status) for o in result.outcomes] == [("a", "trained")]
    assert len(fake.calls) == 1 and not (tmp_path / "runs" / "b").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # the sweep's handler is gone


def test_default_runs_dir():
    assert default_runs_dir(CONFIGS / "synthetic" / "notebook") == Path("runs/synthetic/notebook")
    assert default_runs_dir(Path("/somewhere/grid")) == Path("runs/grid")


# ---------------------------------------------------------------- end to end, real subprocesses


def tiny_overrides(root: Path) -> list[str]:
    return [f"data.roots={{synthetic: {root}}}", "data.synthetic.ids=12", "data.height=64",
            "data.width=32", "data.batch_size=16", "data.num_instances=4", "data.num_workers=0",
            "model.backbone=resnet18", "solver.epochs=1", "solver.warmup_epochs=1",
            "solver.milestones=[1]", "solver.eval_period=1", "solver.checkpoint_period=1"]


def test_cli_sweep_end_to_end(tiny_synthetic, tmp_path, capsys):
    grid = write_grid(tmp_path / "grid", {
        "ok.yaml": {"notebook": {"id": "01", "tricks": "baseline", "map": 50.0}},
        # Fails inside its subprocess: the dataset folder is missing.
        "broken.yaml": {"data": {"train": ["market1501"], "root": str(tmp_path)},
                        "notebook": {"id": "02"}},
    })
    out = tmp_path / "runs"
    code = main(["sweep", str(grid), "--out", str(out), *tiny_overrides(tiny_synthetic)])
    printed = capsys.readouterr().out
    assert code == 1  # a row failed
    assert "sweep: 2 rows (1 failed, 1 trained)" in printed
    assert "failed: broken" in printed and "market1501" in printed
    assert "synthetic-a" in printed and "baseline" in printed  # the report follows
    assert json.loads((out / "ok" / "metrics.json").read_text())["synthetic-a"]["mAP"] >= 0

    assert main(["sweep", str(grid), "--out", str(out), *tiny_overrides(tiny_synthetic)]) == 1
    assert "1 skipped" in capsys.readouterr().out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_sweep_stops_the_running_row_and_the_sweep(tiny_synthetic, tmp_path,
                                                                   sig):
    """The signal reaches the row (only through the sweep: it runs in its own session),
    which saves its state; the sweep starts no further row, calls the row interrupted, not
    failed, and exits 128 + signal."""
    grid = write_grid(tmp_path / "grid", {"a.yaml": {"notebook": {"id": "01"}},
                                          "b.yaml": {"notebook": {"id": "02"}}})
    out = tmp_path / "runs"
    args = [*tiny_overrides(tiny_synthetic), "solver.epochs=50", "solver.milestones=[]",
            "solver.checkpoint_every_iters=1", "model.width=16"]
    proc = subprocess.Popen([sys.executable, "-m", "reidlab.cli", "sweep", str(grid), "--out",
                             str(out), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 300
        while not list((out / "a" / "checkpoints").glob("checkpoint_*.pt")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(sig)  # to the sweep alone
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        row = RunDir(out / "a").status()  # a row left running by a failed test: end it
        if row.get("status") == "running" and isinstance(row.get("pid"), int):
            with contextlib.suppress(ProcessLookupError):
                os.kill(row["pid"], signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == (f"reidlab: sweep stopped by {sig.name}; run it "
                                               "again to continue")
    assert "Traceback" not in stderr and "FAILED" not in stdout
    assert "[1/2] a: interrupted after" in stdout and f"({sig.name}, exit code {128 + sig}" \
        in stdout
    assert "[2/2]" not in stdout and "sweep: 1 rows (1 interrupted)" in stdout
    assert not (out / "b").exists()  # the next row was not started
    status = RunDir(out / "a").status()
    assert status["status"] == "stopped" and RunDir(out / "a").has_state()
    log = (out / "a" / "sweep.log").read_text()
    assert f"reidlab: stopped by {sig.name} in epoch" in log  # the row saved and said so
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["interrupted"] == sig.name
    assert [(r["name"], r["status"]) for r in saved["rows"]] == [("a", "interrupted")]

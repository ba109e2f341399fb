"""``reidlab report``: the notebook's results table, rebuilt from run directories.

A run directory is any folder holding ``config.yaml`` and ``metrics.json`` (what ``reidlab
train`` and ``reidlab test`` write). Each test set of each run gives one row: dataset,
backbone, the notebook's row id and tricks (the config's ``notebook`` section), the measured
mAP, rank-1 and mean in percent, and beside them the notebook's published figures where the
config names them. Rows are sorted as the notebook lists them: by dataset (Market-1501,
DukeMTMC-reID, MSMT17, then the rest by name), training rows before re-ranking rows, then by
backbone family (ResNet-50, ResNet-101, ResNeXt-101 32x8d, with their SE / IBN forms), then by
row id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reidlab.config import load_config
from reidlab.data.check import SKIPPED_KEYS
from reidlab.engine.rundir import RunDir, find_runs, read_json

DATASET_ORDER = ("market1501", "dukemtmc", "msmt17")
FAMILY_ORDER = ("resnet50", "resnet101", "resnext101_32x8d")
# Prefixes of the SE / IBN forms of a backbone, longest first.
FORM_PREFIXES = ("se_ibn_a_", "se_ibn_b_", "ibn_a_", "ibn_b_", "se_")
RAW_PIXELS = " (raw pixels)"  # suffix of the raw-pixel baseline's entry in metrics.json
SCORE_KEY = "save_best"  # the validation score beside the test sets in metrics.json
COLUMNS = ("dataset", "backbone", "id", "tricks", "mAP", "rank1", "mean",
           "nb mAP", "nb rank1", "nb mean", "nb commit")


@dataclass(frozen=True)
class Row:
    """One line of the table: one test set of one run. Figures are in percent."""

    dataset: str
    backbone: str
    id: str | None
    tricks: str
    rerank: bool
    map: float
    rank1: float
    mean: float
    published_map: float | None
    published_rank1: float | None
    published_mean: float | None
    published_on: str | None  # the dataset of the published figures, when not ``dataset``
    commit: str | None  # the notebook code's commit the config reproduces
    run_dir: Path
    finished: bool


@dataclass(frozen=True)
class Floor:
    """The raw-pixel baseline of a test set (percent), a floor for any model."""

    dataset: str
    map: float
    rank1: float
    mean: float


def backbone_family(name: str) -> str:
    """The plain architecture of a backbone name: ``se_ibn_a_resnet101`` -> ``resnet101``."""
    for prefix in FORM_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def read_run(run_dir: Path, root: Path) -> tuple[list[Row], list[Floor]]:
    """The rows (one per test set) and raw-pixel floors of one run directory."""
    cfg = load_config(run_dir / "config.yaml")
    metrics = read_json(run_dir / "metrics.json")
    if not isinstance(metrics, dict):
        raise ValueError(f"{run_dir / 'metrics.json'}: expected a mapping of test sets")
    nb = cfg.notebook
    finished = RunDir(run_dir).is_finished()
    tricks = nb.tricks or ("" if nb.id else str(run_dir.relative_to(root)))
    if not finished:
        tricks = f"{tricks} (unfinished)".strip()
    rows, floors = [], []
    for name, values in metrics.items():
        if name in (SCORE_KEY, *SKIPPED_KEYS):
            continue
        try:
            figures = [100 * float(values[k]) for k in ("mAP", "rank1", "mean")]
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{run_dir / 'metrics.json'}: test set {name!r} lacks mAP, rank1 or mean"
            ) from None
        if name.endswith(RAW_PIXELS):
            floors.append(Floor(name[: -len(RAW_PIXELS)], *figures))
            continue
        rows.append(Row(
            dataset=name,
            backbone=cfg.model.backbone,
            id=nb.id,
            tricks=tricks,
            rerank=cfg.test.rerank,
            map=figures[0],
            rank1=figures[1],
            mean=figures[2],
            published_map=nb.map,
            published_rank1=nb.rank1,
            published_mean=nb.mean,
            published_on=nb.dataset if nb.dataset not in (None, name) else None,
            commit=nb.commit,
            run_dir=run_dir,
            finished=finished,
        ))
    return rows, floors


def sort_key(row: Row) -> tuple:
    """The notebook's order: dataset, training before re-ranking, family, row id."""
    dataset = (DATASET_ORDER.index(row.dataset) if row.dataset in DATASET_ORDER
               else len(DATASET_ORDER), row.dataset)
    family = backbone_family(row.backbone)
    family_key = (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER),
                  family)
    return (dataset, row.rerank, family_key, row.id is None, row.id or "", row.backbone,
            str(row.run_dir))


def collect(root: Path) -> tuple[list[Row], list[Floor]]:
    """All rows under ``root`` in the notebook's order, and one raw-pixel floor per dataset."""
    root = Path(root)
    rows: list[Row] = []
    floors: dict[str, Floor] = {}
    for run_dir in find_runs(root):
        run_rows, run_floors = read_run(run_dir, root)
        rows.extend(run_rows)
        for floor in run_floors:
            floors.setdefault(floor.dataset, floor)
    rows.sort(key=sort_key)
    order = {r.dataset: i for i, r in reversed(list(enumerate(rows)))}
    return rows, sorted(floors.values(), key=lambda f: (order.get(f.dataset, len(rows)),
                                                         f.dataset))


def _published(value: float | None, digits: int, other: bool) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}" + ("*" if other else "")


def _cells(row: Row) -> list[str]:
    other = row.published_on is not None
    return [
        row.dataset,
        row.backbone,
        row.id or "-",
        row.tricks,
        f"{row.map:.1f}",
        f"{row.rank1:.1f}",
        f"{row.mean:.2f}",
        _published(row.published_map, 1, other),
        _published(row.published_rank1, 1, other),
        _published(row.published_mean, 2, other),
        (row.commit or "")[:7],
    ]


def _notes(rows: list[Row], floors: list[Floor]) -> list[str]:
    notes = ["mAP, rank1, mean: measured, in percent (mean = (mAP + rank1) / 2); "
             "nb: the notebook's published figure; nb commit: the commit of the notebook's "
             "code (ArronHZG/reid-baseline) whose settings the config trains"]
    pairs = list(dict.fromkeys((r.dataset, r.published_on) for r in rows if r.published_on))
    if pairs:
        where = ", ".join(f"{measured} rows: {published}" for measured, published in pairs)
        notes.append(f"* published on another dataset than the one measured here ({where}); "
                     "compare orderings, not values")
    for f in floors:
        notes.append(f"raw-pixel floor on {f.dataset}: mAP {f.map:.1f}, rank1 {f.rank1:.1f}, "
                     f"mean {f.mean:.2f}")
    if any(not r.finished for r in rows):
        notes.append("(unfinished): training has not ended; the figures are of its last "
                     "evaluation")
    return notes


def format_text(rows: list[Row], floors: list[Floor]) -> str:
    """A plain text table with aligned columns, then the notes."""
    table = [list(COLUMNS)] + [_cells(r) for r in rows]
    numeric = {i for i, c in enumerate(COLUMNS) if i >= COLUMNS.index("mAP")}
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def fmt(line: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()

    lines = [fmt(table[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(line) for line in table[1:]]
    return "\n".join(lines + [""] + _notes(rows, floors))


def format_markdown(rows: list[Row], floors: list[Floor]) -> str:
    """A Markdown table, then the notes as a list."""
    numeric = COLUMNS.index("mAP")
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "| " + " | ".join("---:" if i >= numeric else "---"
                               for i in range(len(COLUMNS))) + " |"]
    for row in rows:
        cells = [c.replace("|", "\\|").replace("*", "\\*") for c in _cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {n.replace('*', chr(92) + '*')}" for n in _notes(rows, floors)]
    return "\n".join(lines + [""] + notes)


def build_report(root: Path, markdown: bool = False) -> str:
    """The table of every run under ``root``, as plain text or Markdown.

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no run.
    """
    rows, floors = collect(Path(root))
    return format_markdown(rows, floors) if markdown else format_text(rows, floors)

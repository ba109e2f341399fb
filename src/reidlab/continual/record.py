"""What a task sequence leaves in its run directory: ``continual.json`` (the mAP and rank-1
matrices with their summaries), TensorBoard scalars, and the mAP heat-map PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reidlab.continual.matrix import format_matrix, summary
from reidlab.engine.rundir import write_json

CONTINUAL_JSON = "continual.json"
HEATMAP_PNG = "continual_mAP.png"
METRICS = ("mAP", "rank1")


def matrices(rows: Sequence[dict[str, dict[str, float]]], datasets: Sequence[str],
             ) -> dict[str, list[list[float]]]:
    """``{"mAP": R, "rank1": R}`` from the per-dataset metrics after each task."""
    return {m: [[row[d][m] for d in datasets] for row in rows] for m in METRICS}


def build_record(method: str, classifier: str, tasks: Sequence[str], datasets: Sequence[str],
                 rows: Sequence[dict[str, dict[str, float]]], seconds: Sequence[float],
                 seen: Sequence[int] | None = None) -> dict[str, Any]:
    """The content of ``continual.json`` for the tasks done so far (``tasks[:len(rows)]``);
    ``seen[t]``: how many of the first datasets are seen after task ``t`` (default t + 1)."""
    mats = matrices(rows, datasets)
    seen = list(seen) if seen is not None else [t + 1 for t in range(len(rows))]
    return {
        "method": method,
        "classifier": classifier,
        "tasks": list(tasks[: len(rows)]),
        "datasets": list(datasets),
        "seconds": list(seconds),
        "seen": seen,
        "after_task": [dict(row) for row in rows],
        **{m: summary(mats[m], datasets, seen) for m in METRICS},
    }


def format_record(record: dict[str, Any]) -> str:
    """The mAP and rank-1 tables of a ``continual.json`` record."""
    return "\n\n".join(
        format_matrix(record[m]["matrix"], record["tasks"], record["datasets"], metric=m,
                      seen=record.get("seen"))
        for m in METRICS)


def write_record(run: Path, record: dict[str, Any]) -> None:
    """``continual.json`` and the heat map of the tasks done so far."""
    write_json(run / CONTINUAL_JSON, record)
    write_heatmap(run / HEATMAP_PNG, record)


def log_tensorboard(run: Path, record: dict[str, Any]) -> None:
    """The record's last row as scalars at step = its task number (1-based): per dataset
    ``continual/<metric>/<dataset>`` and ``continual/<metric>/average_seen``; after more
    than one task, the forgetting so far and the tables as text."""
    from torch.utils.tensorboard import SummaryWriter

    step = len(record["after_task"])
    writer = SummaryWriter(log_dir=str(run))
    try:
        for d, values in record["after_task"][-1].items():
            for m in METRICS:
                writer.add_scalar(f"continual/{m}/{d}", values[m], step)
        for m in METRICS:
            writer.add_scalar(f"continual/{m}/average_seen", record[m]["average_seen"][-1], step)
            for d, value in record[m]["forgetting"].items():
                writer.add_scalar(f"continual/{m}/forgetting/{d}", value, step)
        writer.add_text("continual/matrix", "```\n" + format_record(record) + "\n```", step)
    finally:
        writer.close()


def write_heatmap(path: Path, record: dict[str, Any]) -> None:
    """R[t][d] mAP as a heat map (rows: after each task; columns: datasets), in percent."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    r = [[100 * v for v in row] for row in record["mAP"]["matrix"]]
    tasks, datasets = record["tasks"], record["datasets"]
    fig = Figure(figsize=(1.6 + 1.3 * len(datasets), 1.2 + 0.7 * len(tasks)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(r, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(datasets)), labels=datasets, rotation=20, ha="right")
    ax.set_yticks(range(len(tasks)), labels=[f"after {t}" for t in tasks])
    for t, row in enumerate(r):
        for d, value in enumerate(row):
            ax.text(d, t, f"{value:.1f}", ha="center", va="center",
                    color="white" if value < 60 else "black", fontsize=9)
    ax.set_title(f"mAP (%), {record['method']}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

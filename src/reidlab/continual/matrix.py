"""The accuracy matrix of a task sequence and the summaries the lifelong-learning papers
report.

``R[t][d]`` is a metric (mAP or rank-1, a fraction) on dataset ``d`` after training task
``t`` (both 0-based; the first ``T`` columns are the tasks in training order, further
columns are test sets that are never trained on). With ``T`` tasks:

- average over seen tasks after task ``t``: ``mean_{d <= t} R[t][d]``; after the last task
  this is the average accuracy ``ACC`` (Lopez-Paz and Ranzato, "Gradient Episodic Memory
  for Continual Learning", NeurIPS 2017);
- forgetting of task ``d < T - 1``: its best mAP after it was learned and before the last
  task, minus its final one, ``max_{d <= t < T-1} R[t][d] - R[T-1][d]`` (Chaudhry et al.,
  "Riemannian Walk for Incremental Learning", ECCV 2018, take the max over every earlier
  task; before ``d`` is learned its accuracy is a transfer figure, not knowledge to lose);
- backward transfer: ``BWT = 1 / (T-1) sum_{d < T-1} (R[T-1][d] - R[d][d])`` (Lopez-Paz and
  Ranzato 2017); negative is forgetting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rows = Sequence[Sequence[float]] | np.ndarray  # (T, D): R[t][d]


def as_matrix(rows: Rows) -> np.ndarray:
    """``rows`` as a (T, D) float array with D >= T (every task is a column).

    Raises:
        ValueError: rows of different lengths, or fewer columns than rows.
    """
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"accuracy matrix: rows of different lengths {sorted(lengths)}")
    r = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    if r.shape[1] < r.shape[0]:
        raise ValueError(f"accuracy matrix: {r.shape[0]} tasks but only {r.shape[1]} datasets")
    return r


def average_seen(rows: Rows, seen: Sequence[int] | None = None) -> list[float]:
    """For each task ``t``, the mean of ``R[t][0..t]`` (the datasets learned so far), or of
    its first ``seen[t]`` columns (the joint baseline has seen every task after its one
    "task")."""
    r = as_matrix(rows)
    counts = list(seen) if seen is not None else [t + 1 for t in range(r.shape[0])]
    return [float(r[t, :n].mean()) for t, n in enumerate(counts)]


def forgetting(rows: Rows) -> list[float]:
    """For each task ``d`` but the last, ``max_{d <= t < T-1} R[t][d] - R[T-1][d]``."""
    r = as_matrix(rows)
    last = r.shape[0] - 1
    return [float(r[d:last, d].max() - r[last, d]) for d in range(last)]


def backward_transfer(rows: Rows) -> float | None:
    """``mean_{d < T-1} (R[T-1][d] - R[d][d])``; ``None`` with a single task."""
    r = as_matrix(rows)
    last = r.shape[0] - 1
    if last == 0:
        return None
    return float(np.mean([r[last, d] - r[d, d] for d in range(last)]))


def summary(rows: Rows, datasets: Sequence[str], seen: Sequence[int] | None = None) -> dict:
    """The summaries of one metric's matrix, keyed for ``continual.json``."""
    r = as_matrix(rows)
    if len(datasets) != r.shape[1]:
        raise ValueError(f"accuracy matrix has {r.shape[1]} columns but {len(datasets)} "
                         "dataset names")
    return {
        "matrix": r.tolist(),
        "average_seen": average_seen(r, seen),
        "forgetting": dict(zip(datasets, forgetting(r), strict=False)),
        "backward_transfer": backward_transfer(r),
    }


def format_matrix(rows: Rows, tasks: Sequence[str],
                  datasets: Sequence[str], metric: str = "mAP",
                  seen: Sequence[int] | None = None) -> str:
    """A plain text table in percent: one row per task, one column per dataset, the
    average over seen datasets, then the forgetting row and the backward transfer."""
    r = as_matrix(rows)
    width = max(len("forgetting"), *(len(f"after {t}") for t in tasks))
    cols = [*datasets, "avg seen"]
    colw = max(8, *(len(c) for c in cols))
    lines = [f"{metric:<{width}}  " + "  ".join(f"{c:>{colw}}" for c in cols)]
    for t, (name, avg) in enumerate(zip(tasks, average_seen(r, seen), strict=True)):
        cells = [f"{100 * v:{colw}.2f}" for v in [*r[t], avg]]
        lines.append(f"{'after ' + name:<{width}}  " + "  ".join(cells))
    forget = forgetting(r)
    if forget:
        cells = [f"{100 * v:{colw}.2f}" for v in forget]
        cells += [f"{'':>{colw}}"] * (len(cols) - len(cells))
        lines.append(f"{'forgetting':<{width}}  " + "  ".join(cells))
        bwt = backward_transfer(r)
        assert bwt is not None
        lines.append(f"backward transfer: {100 * bwt:.2f}")
    return "\n".join(lines)

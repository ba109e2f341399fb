"""Pictures of a test run: ranked lists of K queries (PNG grids + HTML) and CMC curves."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from reidlab.config import Config
from reidlab.engine.modes import RunResult
from reidlab.evaluation import cmc_figure, plot_cmc, topk, write_rank_grids


def write_pictures(result: RunResult, cfg: Config, num_queries: int) -> list[Path]:
    """For every test set, the top-10 of ``num_queries`` queries (spread over the query
    list) as PNG grids and an HTML page; one CMC plot of all sets, saved as ``cmc.png`` and
    logged to TensorBoard. The grids show the ranking by ``test.metric``, before any
    re-ranking. Returns the HTML pages and the CMC plot."""
    written = []
    for ts in result.test_sets:
        f = result.features[ts.name]
        q = f.num_query
        indices, _ = topk(
            f.feats[:q], f.feats[q:], k=10, metric=cfg.test.metric,
            q_pids=f.pids[:q], g_pids=f.pids[q:], q_camids=f.camids[:q], g_camids=f.camids[q:],
        )
        page = write_rank_grids(
            [r.path for r in ts.query], f.pids[:q], f.camids[:q],
            [r.path for r in ts.gallery], f.pids[q:], f.camids[q:],
            indices, result.run_dir / "pictures" / ts.name, num=num_queries,
        )
        written.append(page)
    written.append(plot_cmc(result.cmc, result.run_dir / "cmc.png"))
    with SummaryWriter(str(result.run_dir)) as writer:
        writer.add_figure("test/cmc", cmc_figure(result.cmc))
    return written

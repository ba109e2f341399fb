"""Evaluation: CMC/mAP/mINP ranking, k-reciprocal re-ranking, query expansion, pictures.

Everything here works in bounded memory (query chunks, sparse neighbour sets), so that
MSMT17-size test sets (11,659 x 82,161) fit a 24 GB, 2-core machine. Plotting functions
import matplotlib only when called.
"""

from reidlab.evaluation.distance import pairwise_distance
from reidlab.evaluation.evaluate import alpha_query_expansion, evaluate, topk
from reidlab.evaluation.ranking import Ranker, RankResult, rank
from reidlab.evaluation.rerank import jaccard_distance, re_rank
from reidlab.evaluation.visualize import cmc_figure, plot_cmc, write_rank_grids

__all__ = [
    "RankResult",
    "Ranker",
    "alpha_query_expansion",
    "cmc_figure",
    "evaluate",
    "jaccard_distance",
    "pairwise_distance",
    "plot_cmc",
    "rank",
    "re_rank",
    "topk",
    "write_rank_grids",
]

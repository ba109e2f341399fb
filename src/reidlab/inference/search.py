"""Rank a saved gallery for new query images: ``reidlab search``.

The queries are embedded as the gallery was (the config stored in the feature file, or
one given), and ranked with the evaluation's own nearest-neighbour code
(:func:`reidlab.evaluation.topk`: the same distance blocks as ``evaluate``, nearest first,
ties by the lower gallery index), by ``test.metric``. No protocol filter applies: every
gallery image is a candidate, the query's own file included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from reidlab.config import Config
from reidlab.engine.context import resolve_device
from reidlab.evaluation import topk
from reidlab.inference.extract import (
    FeatureFile,
    embed_images,
    list_images,
    load_features,
    load_inference_model,
    require_readable,
    stored_config,
)


@dataclass
class Match:
    """One ranked gallery image: its 1-based rank, path, distance and pid (None: unknown)."""

    rank: int
    path: str
    distance: float
    pid: int | None


@dataclass
class QueryResult:
    """A query image, its pid (None: unknown) and its ranked gallery images."""

    path: str
    pid: int | None
    matches: list[Match]

    def correct(self, match: Match) -> bool | None:
        """Whether ``match`` shows the query's identity; None when either pid is unknown."""
        if self.pid is None or match.pid is None:
            return None
        return self.pid == match.pid


def rank_gallery(q_feats: torch.Tensor, gallery: FeatureFile, query_paths: list[str],
                 query_pids: list[int | None], top: int, metric: str) -> list[QueryResult]:
    """The ``top`` nearest gallery images of each query feature (Q, D)."""
    if q_feats.shape[1] != gallery.feats.shape[1]:
        raise ValueError(f"query features have dimension {q_feats.shape[1]} but the gallery's "
                         f"have {gallery.feats.shape[1]}: another model made the gallery")
    if top < 1:
        raise ValueError(f"--top must be at least 1, got {top}")
    index, dist = topk(q_feats, gallery.feats, k=min(top, len(gallery.paths)),
                       metric=metric)  # type: ignore[arg-type]
    results = []
    for qi, (path, pid) in enumerate(zip(query_paths, query_pids, strict=True)):
        matches = [
            Match(r + 1, gallery.paths[g], float(d),
                  None if gallery.pids is None else int(gallery.pids[g]))
            for r, (g, d) in enumerate(zip(index[qi], dist[qi], strict=True)) if g >= 0
        ]
        results.append(QueryResult(path, pid, matches))
    return results


def search(gallery_file: str | Path, query: str | Path, cfg: Config | None = None,
           top: int = 10, progress: bool = True,
           overrides: list[str] | None = None) -> list[QueryResult]:
    """Rank the gallery of ``gallery_file`` for every image of ``query`` (an image, a
    folder or a CSV, see :func:`~reidlab.inference.extract.list_images`).

    Args:
        gallery_file: written by ``reidlab extract``.
        query: the query images.
        cfg: the config (with ``model.weights``) to embed the queries; None takes the one
            stored in the feature file, with its weights, and ``overrides`` on top.
        top: gallery images listed per query.
        overrides: ``key=value`` changes of the stored config (only without ``cfg``).

    Returns:
        One :class:`QueryResult` per query image, in the order of :func:`list_images`.
    """
    gallery = load_features(gallery_file)
    if cfg is None:
        cfg = stored_config(gallery, overrides)
    images = list_images(query)
    require_readable(images.records)
    device = resolve_device(cfg.device)
    model, _ = load_inference_model(cfg, device)
    q_feats = embed_images(cfg, model, images.records, device, progress)
    pids: list[int | None] = [r.pid if images.labelled else None for r in images.records]
    return rank_gallery(q_feats, gallery, [r.path for r in images.records], pids, top,
                        cfg.test.metric)


def format_results(results: list[QueryResult]) -> str:
    """Plain text: each query's path, then one line per match (rank, distance, path; a
    ``+`` or ``-`` when the ids are known and match or not)."""
    lines = []
    for res in results:
        lines.append(f"query {res.path}" + (f" (pid {res.pid})" if res.pid is not None else ""))
        for m in res.matches:
            ok = res.correct(m)
            mark = " " if ok is None else "+" if ok else "-"
            lines.append(f"  {m.rank:3d} {mark} {m.distance:.4f}  {m.path}")
    return "\n".join(lines)


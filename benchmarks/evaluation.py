"""Time and peak memory of reidlab's ranking and re-ranking against plain dense references.

Realistic synthetic features (identity centroids in confusable groups, a camera bias and
per-image noise, 2048-d, L2-normalised) at Market-1501 size (3,368 queries x 15,913
gallery: 750 identities, 6 cameras, distractors pid 0 and junk pid -1) and MSMT17 size
(11,659 x 82,161: 3,060 identities, 15 cameras). Every case runs in its own subprocess,
which reports the seconds of the call itself and its peak resident memory (VmHWM: the
interpreter, torch and the loaded inputs included). References, run the same way:

* ranking: a plain numpy full-argsort evaluation like the classic ``eval_func``
  (reid-strong-baseline), on the same distance matrix, or on ``1 - q @ g.T`` from features;
* re-ranking: the authors' dense re-ranking (Zhong et al., CVPR 2017) transcribed with
  float32 matrices;
* the k-nearest-neighbour search of re-ranking (``knn``: reidlab's one pass over distance
  tiles, which also gives the row maxima and the query x gallery block re-ranking needs)
  against faiss's exact ``IndexFlatL2`` (k-NN only), and how many neighbour lists agree.

A reference whose predicted memory exceeds the limit (default 20 GB, or what the machine
has free) is skipped, and the table says so. Usage::

    python benchmarks/evaluation.py --sizes market,msmt17 [--skip-reference] [--cases knn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {
    # queries, gallery identity images, distractors (pid 0), junk (pid -1), ids, cameras
    "market": dict(num_q=3368, num_g_ids=13115, distractors=2000, junk=798, ids=750, cams=6),
    "msmt17": dict(num_q=11659, num_g_ids=82161, distractors=0, junk=0, ids=3060, cams=15),
}
DIM = 2048


def make_features(num_q, num_g_ids, distractors, junk, ids, cams, seed=0):
    """Identity centroids (in groups of 8 similar identities) plus camera bias and noise."""
    rng = np.random.default_rng(seed)
    groups = rng.standard_normal((max(1, ids // 8), DIM)).astype(np.float32)
    cent = 1.2 * groups[rng.integers(0, len(groups), ids)]
    cent += rng.standard_normal((ids, DIM)).astype(np.float32)
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    cam_bias = rng.standard_normal((cams, DIM)).astype(np.float32)
    cam_bias /= np.linalg.norm(cam_bias, axis=1, keepdims=True)

    def images(pids):  # pids >= 0: identity index; -1: a random person (distractor/junk)
        camids = rng.integers(0, cams, len(pids))
        out = np.empty((len(pids), DIM), dtype=np.float32)
        for s in range(0, len(pids), 4096):
            p, c = pids[s : s + 4096], camids[s : s + 4096]
            own = rng.standard_normal((len(p), DIM)).astype(np.float32) / np.sqrt(DIM)
            base = np.where((p >= 0)[:, None], cent[np.maximum(p, 0)], own)
            sigma = 1.2 * rng.lognormal(0.0, 0.35, len(p)).astype(np.float32)
            noise = rng.standard_normal((len(p), DIM)).astype(np.float32) / np.sqrt(DIM)
            x = base + 0.1 * cam_bias[c] + sigma[:, None] * noise
            out[s : s + 4096] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out, camids

    q_ids = rng.integers(0, ids, num_q)
    g_ids = np.concatenate([np.arange(ids), rng.integers(0, ids, num_g_ids - ids)])
    g_ids = np.concatenate([g_ids, np.full(distractors + junk, -1)])
    q, q_cams = images(q_ids)
    g, g_cams = images(g_ids)
    g_pids = np.concatenate([g_ids[:num_g_ids] + 1, np.zeros(distractors), -np.ones(junk)])
    return q, g, q_ids + 1, g_pids.astype(np.int64), q_cams, g_cams


# ----------------------------------------------------------------------------- references


def reference_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The classic full-sort evaluation (argsort every row), junk pid -1 removed."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        remove = (g_pids[order] == -1) | (
            (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        )
        raw = matches[i][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        all_inp.append(cmc[np.nonzero(raw)[0][-1]] / (np.nonzero(raw)[0][-1] + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw.cumsum() / (np.arange(len(raw)) + 1.0)
        all_ap.append((precision * raw).sum() / raw.sum())
    return np.mean(all_cmc, 0), float(np.mean(all_ap)), float(np.mean(all_inp))


def reference_re_ranking(q, g, k1=20, k2=6, lambda_value=0.3):
    """The authors' dense re-ranking, transcribed with float32 in place of float16."""
    import torch

    feat = torch.cat([torch.from_numpy(q), torch.from_numpy(g)])
    num_q, n = len(q), len(feat)
    sq = (feat * feat).sum(1, keepdim=True)
    dist = (sq + sq.T - 2 * feat @ feat.T).clamp_min_(0).numpy()
    del feat
    dist = np.transpose(dist / np.max(dist, axis=0))
    initial_rank = np.argsort(dist, axis=1, kind="stable").astype(np.int32)
    V = np.zeros_like(dist)
    half = int(np.around(k1 / 2))
    for i in range(n):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for c in reciprocal:
            c_forward = initial_rank[c, : half + 1]
            c_backward = initial_rank[c_forward, : half + 1]
            c_reciprocal = c_forward[np.where(c_backward == c)[0]]
            if len(np.intersect1d(c_reciprocal, reciprocal)) > 2 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    dist = dist[:num_q]
    if k2 != 1:
        V_qe = np.zeros_like(V)
        for i in range(n):
            V_qe[i] = np.mean(V[initial_rank[i, :k2]], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros_like(dist)
    for i in range(num_q):
        temp_min = np.zeros(n, dtype=np.float32)
        nonzero = np.where(V[i] != 0)[0]
        for j in nonzero:
            temp_min[inv_index[j]] += np.minimum(V[i, j], V[inv_index[j], j])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    return (jaccard * (1 - lambda_value) + dist * lambda_value)[:, num_q:]


# ----------------------------------------------------------------------------- cases


def load(data: Path, size: str):
    z = np.load(data / f"{size}.npz")
    return z["q"], z["g"], z["q_pids"], z["g_pids"], z["q_camids"], z["g_camids"]


def run_case(case: str, size: str, data: Path) -> dict:
    """Run one case in this process; return seconds of the call and extra facts."""
    import torch

    from reidlab.evaluation import evaluate, rank, re_rank

    q, g, *labels = load(data, size)
    out: dict = {}
    if case in ("rank", "rank_ref"):
        distmat = np.load(data / f"{size}_dist.npy")
        t = time.perf_counter()
        if case == "rank":
            r = rank(distmat, *labels)
            out["mAP"], out["mINP"], out["r1"] = r.mAP, r.mINP, float(r.cmc[0])
        else:
            cmc, mAP, mINP = reference_eval(distmat, *labels)
            out["mAP"], out["mINP"], out["r1"] = mAP, mINP, float(cmc[0])
    elif case in ("evaluate", "evaluate_ref"):
        t = time.perf_counter()
        if case == "evaluate":
            r = evaluate(q, g, *labels, metric="cosine")
            out["mAP"], out["mINP"], out["r1"] = r.mAP, r.mINP, float(r.cmc[0])
        else:
            distmat = (1 - torch.from_numpy(q) @ torch.from_numpy(g).T).numpy()
            cmc, mAP, mINP = reference_eval(distmat, *labels)
            out["mAP"], out["mINP"], out["r1"] = mAP, mINP, float(cmc[0])
    elif case in ("knn", "knn_ref"):
        x = np.concatenate([q, g])
        t = time.perf_counter()
        if case == "knn":
            from reidlab.evaluation.distance import self_neighbours

            idx = self_neighbours(torch.from_numpy(x), 21, split=len(q)).indices
        else:
            import faiss

            index = faiss.IndexFlatL2(x.shape[1])
            index.add(x)
            idx = index.search(x, 21)[1]
        out["seconds"] = time.perf_counter() - t
        np.save(data / f"{size}_{case}.npy", idx)
        out["mAP"] = float("nan")
    elif case in ("rerank", "rerank_ref"):
        t = time.perf_counter()
        dist = re_rank(q, g) if case == "rerank" else reference_re_ranking(q, g)
        out["seconds"] = time.perf_counter() - t
        if size == "market":
            np.save(data / f"{size}_{case}.npy", dist)
        r = rank(dist, *labels)
        out["mAP"], out["mINP"], out["r1"] = r.mAP, r.mINP, float(r.cmc[0])
    else:
        raise ValueError(f"unknown case {case!r}")
    out.setdefault("seconds", time.perf_counter() - t)
    return out


def peak_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def predicted_reference_gb(case: str, size: str) -> float:
    p = SIZES[size]
    num_q, num_g = p["num_q"], p["num_g_ids"] + p["distractors"] + p["junk"]
    if case in ("rank", "evaluate"):  # distances, argsort int64, gathered pids, matches
        return num_q * num_g * (4 + 8 + 8 + 4) / 1e9
    if case == "knn":  # faiss: the features and its result lists
        return (num_q + num_g) * (DIM * 4 + 21 * 12) / 1e9
    n = num_q + num_g  # float32 distance, V, V_qe, argsort (int64 while sorting)
    return n * n * (4 + 4 + 4 + 8) / 1e9


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return float("inf")


def spawn(case: str, size: str, data: Path) -> dict:
    cmd = [sys.executable, __file__, "--run-case", case, "--size", size, "--data", str(data)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def prepare(size: str, data: Path) -> None:
    if (data / f"{size}.npz").exists():
        return
    q, g, q_pids, g_pids, q_camids, g_camids = make_features(**SIZES[size])
    np.savez(
        data / f"{size}.npz",
        q=q,
        g=g,
        q_pids=q_pids,
        g_pids=g_pids,
        q_camids=q_camids,
        g_camids=g_camids,
    )
    if size == "market":
        import torch

        np.save(
            data / f"{size}_dist.npy", (1 - torch.from_numpy(q) @ torch.from_numpy(g).T).numpy()
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="market", help="comma list of: market, msmt17")
    ap.add_argument("--skip-reference", action="store_true", help="only time reidlab")
    ap.add_argument("--limit-gb", type=float, default=20.0, help="skip references above this")
    ap.add_argument("--data", default=None, help="folder caching the generated features")
    ap.add_argument("--cases", default="rank,evaluate,rerank,knn",
                    help="comma list of: rank (market only), evaluate, rerank, knn")
    ap.add_argument("--run-case", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_case:
        out = run_case(args.run_case, args.size, Path(args.data))
        out["peak_gb"] = peak_gb()
        print(json.dumps(out))
        return
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            raise SystemExit(f"--sizes: unknown size {s!r}; expected some of {sorted(SIZES)}")
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="reidlab-bench-"))
    data.mkdir(parents=True, exist_ok=True)
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    rows = []
    for size in sizes:
        prepare(size, data)
        cases = [c for c in args.cases.split(",") if c and (c != "rank" or size == "market")]
        for case in cases:
            ours = spawn(case, size, data)
            ref: dict = {"skipped": "--skip-reference"} if args.skip_reference else {}
            need = predicted_reference_gb(case, size)
            if not ref and need > min(args.limit_gb, 0.9 * available_gb()):
                ref = {"skipped": f"predicted {need:.0f} GB > limit"}
            if not ref:
                ref = spawn(case + "_ref", size, data)
            rows.append((size, case, ours, ref))
            print_row(size, case, ours, ref, data)
    print(
        f"load average at end: {os.getloadavg()} (2 cores shared with other users: "
        "timings are noisy)"
    )


def print_row(size: str, case: str, ours: dict, ref: dict, data: Path) -> None:
    names = {
        "rank": "rank(distmat)",
        "evaluate": "evaluate(features)",
        "rerank": "re_rank(features)",
        "knn": "k-NN (k=21)",
    }
    if "error" in ours:
        print(f"{size:7s} {names[case]:19s} reidlab failed: {ours['error']}")
        return
    line = (
        f"{size:7s} {names[case]:19s} reidlab {ours['seconds']:8.2f} s {ours['peak_gb']:6.2f} GB"
        f"  mAP {ours['mAP']:.4f}"
    )
    if case == "knn" and "seconds" in ref:
        a, b = np.load(data / f"{size}_knn.npy"), np.load(data / f"{size}_knn_ref.npy")
        same_lists = float((a == b).all(1).mean())
        same_sets = float((np.sort(a, 1) == np.sort(b, 1)).all(1).mean())
        print(f"{size:7s} {names[case]:19s} reidlab {ours['seconds']:8.2f} s "
              f"{ours['peak_gb']:6.2f} GB | faiss IndexFlatL2 {ref['seconds']:8.2f} s "
              f"{ref['peak_gb']:6.2f} GB | time x{ref['seconds'] / ours['seconds']:.2f} | "
              f"identical lists {same_lists:.4f}, identical sets {same_sets:.4f}")
        return
    if "skipped" in ref or "error" in ref:
        print(line + f" | reference: {ref.get('skipped') or ref.get('error')}")
        return
    line += (
        f" | reference {ref['seconds']:8.2f} s {ref['peak_gb']:6.2f} GB"
        f" | time x{ref['seconds'] / ours['seconds']:.1f},"
        f" memory x{ref['peak_gb'] / ours['peak_gb']:.1f}"
        f" | |dmAP| {abs(ref['mAP'] - ours['mAP']):.1e}"
    )
    if case == "rerank" and (data / f"{size}_rerank.npy").exists():
        a, b = np.load(data / f"{size}_rerank.npy"), np.load(data / f"{size}_rerank_ref.npy")
        line += f", max|d dist| {np.abs(a - b).max():.1e}"
    print(line)


if __name__ == "__main__":
    main()

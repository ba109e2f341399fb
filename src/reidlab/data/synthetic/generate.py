"""Writing a synthetic dataset to disk in the Market-1501 layout.

Layout and naming follow Market-1501 (Zheng et al., "Scalable Person Re-identification: A
Benchmark", ICCV 2015): ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` holding
``{pid:04d}_c{cam}s{seq}_{frame:06d}_{bbox:02d}.jpg``; the gallery also holds junk images
(pid ``-1``, bad detections) and distractors (pid ``0000``, people outside the identity set).

Every image is rendered from its own generator seeded by ``(seed, domain, stream, ...)``,
so the output does not depend on the order or the process that renders it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from reidlab.data.synthetic.difficulty import Difficulty
from reidlab.data.synthetic.domains import domain_key, domain_style
from reidlab.data.synthetic.identity import Identity, sample_identity
from reidlab.data.synthetic.scene import render

logger = logging.getLogger(__name__)

VERSION = 1  # bump whenever the rendering changes, so that stale folders are rewritten
NUM_CAMERAS = 6
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MANIFEST = "synthetic.json"
# generator streams: independent random sequences for each purpose
_SPLIT, _PLAN, _IDENTITY, _IMAGE = 1, 2, 3, 4
# image kinds
PERSON, DISTRACTOR, JUNK = 0, 1, 2


@dataclass(frozen=True)
class Job:
    """One image to render: where it goes, who it shows and which camera sees it."""

    folder: str
    name: str
    kind: int  # PERSON, DISTRACTOR or JUNK
    pid: int  # identity for PERSON, else the running number of the extra image
    index: int  # image number of this identity
    camid: int  # 0-based


def _rng(seed: int, domain: str, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, domain_key(domain), *stream])


def _file_name(pid: int, cam: int, seq: int, frame: int, bbox: int) -> str:
    label = "-1" if pid < 0 else f"{pid:04d}"
    return f"{label}_c{cam + 1}s{seq}_{frame:06d}_{bbox:02d}.jpg"


def _identity_jobs(pid: int, test: bool, seed: int, domain: str, diff: Difficulty) -> list[Job]:
    """The images of one identity, spread over 2+ cameras with 2+ images each."""
    rng = _rng(seed, domain, _PLAN, pid)
    lo, hi = diff.test_images_per_id if test else diff.train_images_per_id
    n = int(rng.integers(lo, hi + 1))
    k = int(
        np.clip(
            rng.integers(diff.cameras_per_id[0], diff.cameras_per_id[1] + 1),
            2,
            min(NUM_CAMERAS, max(2, n // 2)),
        )
    )
    n = max(n, 2 * k)
    cams = np.sort(rng.choice(NUM_CAMERAS, size=k, replace=False))
    counts = 2 + rng.multinomial(n - 2 * k, rng.dirichlet(np.full(k, 2.0)))
    query_cams: set[int] = set()
    if test:
        q = int(rng.integers(diff.query_cameras_per_id[0], diff.query_cameras_per_id[1] + 1))
        query_cams = {int(c) for c in rng.choice(cams, size=min(q, k), replace=False)}
    jobs, index = [], 0
    for cam, count in zip(cams.tolist(), counts.tolist(), strict=True):
        seq, frame = int(rng.integers(1, 7)), int(rng.integers(0, 5000))
        query_at = int(rng.integers(count)) if cam in query_cams else -1
        for j in range(count):
            frame += int(rng.integers(5, 60))  # a tracklet: frames increase, names are unique
            folder = "query" if j == query_at else SPLITS[2] if test else SPLITS[0]
            name = _file_name(pid, cam, seq, frame, int(rng.integers(1, 9)))
            jobs.append(Job(folder, name, PERSON, pid, index, cam))
            index += 1
    return jobs


def _extra_jobs(kind: int, count: int, seed: int, domain: str) -> list[Job]:
    """Junk (pid -1) or distractor (pid 0) gallery images, one random camera each."""
    rng = _rng(seed, domain, _PLAN, 100_000 + kind)
    label = -1 if kind == JUNK else 0
    jobs = []
    for i in range(count):
        cam = int(rng.integers(NUM_CAMERAS))
        frame = 60 * i + int(rng.integers(60))
        name = _file_name(label, cam, int(rng.integers(1, 7)), frame, int(rng.integers(1, 9)))
        jobs.append(Job(SPLITS[2], name, kind, i, i, cam))
    return jobs


def plan(num_ids: int, seed: int, domain: str, diff: Difficulty) -> list[Job]:
    """Every image of the dataset; pids ``1..num_ids``, a random half of them for training."""
    if not 2 <= num_ids <= 9999:
        raise ValueError(f"synthetic num_ids must be in 2..9999 (4-digit pids), got {num_ids}")
    if seed < 0:
        raise ValueError(f"synthetic seed must be a non-negative integer, got {seed}")
    pids = _rng(seed, domain, _SPLIT, num_ids).permutation(np.arange(1, num_ids + 1))
    train = sorted(pids[: num_ids // 2].tolist())
    test = sorted(pids[num_ids // 2 :].tolist())
    jobs = [j for pid in train for j in _identity_jobs(pid, False, seed, domain, diff)]
    test_jobs = [j for pid in test for j in _identity_jobs(pid, True, seed, domain, diff)]
    gallery = sum(j.folder == SPLITS[2] for j in test_jobs)
    jobs += test_jobs
    jobs += _extra_jobs(DISTRACTOR, round(diff.distractor_fraction * gallery), seed, domain)
    jobs += _extra_jobs(JUNK, round(diff.junk_fraction * gallery), seed, domain)
    return jobs


@lru_cache(maxsize=16384)
def person(pid: int, seed: int, domain: str) -> Identity:
    """The appearance of identity ``pid``, the same in every image of it."""
    return sample_identity(_rng(seed, domain, _IDENTITY, pid), domain_style(domain))


def render_job(job: Job, seed: int, domain: str, diff: Difficulty) -> bytes:
    """The JPEG bytes of one planned image (a pure function of its arguments)."""
    style = domain_style(domain)
    rng = _rng(seed, domain, _IMAGE, job.kind, job.pid, job.index)
    # distractors and junk show people outside the identity set, drawn from the image's seed
    who = person(job.pid, seed, domain) if job.kind == PERSON else sample_identity(rng, style)
    return render(rng, who, style, job.camid, diff, junk=job.kind == JUNK)


def _manifest(num_ids: int, seed: int, domain: str, diff: Difficulty) -> dict[str, Any]:
    # a JSON round trip turns tuples into lists, as they will read back from the file
    return json.loads(
        json.dumps(
            {
                "generator": "reidlab.data.synthetic",
                "version": VERSION,
                "num_ids": num_ids,
                "seed": seed,
                "domain": domain,
                "difficulty": asdict(diff),
            }
        )
    )


def _count_images(out_dir: Path) -> dict[str, int]:
    return {
        s: len(list((out_dir / s).glob("*.jpg"))) if (out_dir / s).is_dir() else 0 for s in SPLITS
    }


def _existing(out_dir: Path, wanted: dict[str, Any]) -> bool:
    """True if ``out_dir`` holds exactly the wanted generation, complete."""
    path = out_dir / MANIFEST
    if not path.is_file():
        if any(_count_images(out_dir).values()):
            raise FileExistsError(
                f"{out_dir} holds images but no {MANIFEST}: not a synthetic dataset folder, "
                "refusing to overwrite it"
            )
        return False
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if found.get("generator") != wanted["generator"]:
        raise FileExistsError(f"{path} was not written by reidlab.data.synthetic")
    same = all(found.get(k) == v for k, v in wanted.items())
    return same and found.get("complete") is True and found.get("counts") == _count_images(out_dir)


def _write_manifest(out_dir: Path, content: dict[str, Any]) -> None:
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(content, indent=2) + "\n")
    tmp.replace(out_dir / MANIFEST)


def generate(
    out_dir: Path,
    *,
    num_ids: int = 160,
    seed: int = 0,
    domain: str = "a",
    progress: bool = True,
    difficulty: Difficulty | None = None,
) -> Path:
    """Render a synthetic ReID dataset into ``out_dir`` in the Market-1501 layout.

    Args:
        out_dir: folder to write; created if missing. If it already holds this exact
            generation (same ``synthetic.json`` and image counts) nothing is rewritten.
        num_ids: identities in total, half for training and half for testing.
        seed: random seed; the same arguments give byte-identical files.
        domain: ``"a"`` (default, summer street) or ``"b"`` (winter mall and night street);
            any other name derives a further domain from its hash.
        progress: show a tqdm progress bar.
        difficulty: nuisance and split knobs; ``None`` for the defaults.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    diff = difficulty if difficulty is not None else Difficulty()
    domain_style(domain)  # validates the arguments before the folder is touched
    jobs = plan(num_ids, seed, domain, diff)
    wanted = _manifest(num_ids, seed, domain, diff)
    out_dir.mkdir(parents=True, exist_ok=True)
    if _existing(out_dir, wanted):
        logger.info("synthetic dataset in %s is up to date", out_dir)
        return out_dir
    for split in SPLITS:
        (out_dir / split).mkdir(exist_ok=True)
        for old in (out_dir / split).glob("*.jpg"):
            old.unlink()
    _write_manifest(out_dir, {**wanted, "complete": False})
    for job in tqdm(jobs, desc=f"synthetic domain {domain}", unit="img", disable=not progress):
        (out_dir / job.folder / job.name).write_bytes(render_job(job, seed, domain, diff))
    counts = _count_images(out_dir)
    if sum(counts.values()) != len(jobs):
        raise RuntimeError(f"{out_dir}: wrote {sum(counts.values())} images, planned {len(jobs)}")
    _write_manifest(out_dir, {**wanted, "complete": True, "counts": counts})
    logger.info("wrote synthetic dataset to %s: %s", out_dir, counts)
    return out_dir

"""Open every image of a dataset once and say which ones cannot be used.

Each file is read whole and decoded whole by Pillow with truncated images refused, so a
zero-byte file, a file that is not an image, a truncated image and an unreadable file
(permissions, I/O error) are each found before training instead of when first read. The
result is cached in a JSON file beside the images (``.reidlab-image-check.json`` in the
folder that holds them all; under ``~/.cache/reidlab/image-check/`` when that folder is
not writable or is a filesystem root), keyed by each file's size and modification time,
so that only new or changed files are opened again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm import tqdm

log = logging.getLogger("reidlab")

CACHE_NAME = ".reidlab-image-check.json"
CACHE_VERSION = 1
IMAGE_MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG

#: A bad file's finding: (kind, detail); kinds are zero-byte, not-an-image, truncated,
#: unreadable, missing.
Finding = tuple[str, str]


def inspect_image(path: str | Path) -> Finding | None:
    """Read and fully decode one image; None when it is fine, else what is wrong."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing", "file does not exist"
    except OSError as err:
        return "unreadable", f"cannot be read: {err.strerror or err}"
    if not data:
        return "zero-byte", "zero-byte file"
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by some other library: decode strictly anyway
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated images may pass")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except UnidentifiedImageError:
        if data.startswith(IMAGE_MAGICS):  # a JPEG or PNG cut inside its header
            return "truncated", "truncated image (it ends inside the image header)"
        return "not-an-image", "not an image file (Pillow recognises no image format)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        text = str(err)
        if "truncated" in text.lower() or isinstance(err, SyntaxError | EOFError):
            return "truncated", f"truncated image ({text})"
        return "unreadable", f"cannot be decoded: {text}"
    return None


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def cache_path(folder: Path) -> Path:
    """Where the cache of the images under ``folder`` is kept (see the module docstring)."""
    if os.access(folder, os.W_OK) and folder != Path(folder.anchor):
        return folder / CACHE_NAME
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "reidlab" / "image-check" / f"{digest}.json"


def _read_cache(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_cache(path: Path, files: dict[str, list]) -> None:
    """Written to a temporary file and renamed, so that a run reading it meanwhile (or
    killed while writing) never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".image-check-", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": CACHE_VERSION, "files": files}, fh)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; others reading the dataset use it
        os.replace(tmp, path)
    except OSError as err:
        log.warning("image check: cannot write its cache %s (%s); the images will be opened "
                    "again next time", path, err)


def check_images(paths: Sequence[str], *, workers: int | None = None, use_cache: bool = True,
                 progress: bool = True, desc: str = "checking images") -> dict[str, Finding]:
    """Find the bad files among ``paths``, opening them in parallel threads.

    Args:
        paths: image files.
        workers: threads (default: the CPU count, at most 16).
        use_cache: read and update the cache beside the images.
        progress: show a progress bar (tqdm, on stderr).
        desc: the progress bar's label.

    Returns:
        ``{path: (kind, detail)}`` for every bad file; an empty dict when all are fine.
    """
    unique = list(dict.fromkeys(str(p) for p in paths))
    if not unique:
        return {}
    folder = Path(os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in unique]))
    store = cache_path(folder) if use_cache else None
    cached = _read_cache(store) if store is not None else {}
    results: dict[str, Finding | None] = {}
    stamps: dict[str, tuple[int, int] | None] = {}
    todo = []
    for p in unique:
        stamps[p] = stamp = _stamp(p)
        rel = os.path.relpath(os.path.abspath(p), folder)
        entry = cached.get(rel)
        if stamp is not None and entry is not None and tuple(entry[:2]) == stamp:
            results[p] = (entry[2], entry[3]) if entry[2] else None
        else:
            todo.append(p)
    if todo:
        threads = workers or min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            found = pool.map(inspect_image, todo)
            bar = tqdm(found, total=len(todo), desc=desc, disable=not progress, unit="img",
                       leave=False)
            for p, finding in zip(todo, bar, strict=True):
                results[p] = finding
    log.info("image check: %d images under %s, %d opened, %d from the cache", len(unique),
             folder, len(todo), len(unique) - len(todo))
    if store is not None and todo:
        for p in todo:
            stamp = stamps[p]
            if stamp is None:
                continue
            finding = results[p]
            rel = os.path.relpath(os.path.abspath(p), folder)
            cached[rel] = [*stamp, *(finding if finding else (None, None))]
        _write_cache(store, cached)
    return {p: f for p, f in results.items() if f is not None}

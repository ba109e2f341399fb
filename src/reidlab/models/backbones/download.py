"""Pretrained weights named by URL: downloaded once into a cache, checked by SHA-256.

The public ImageNet releases reidlab loads are listed in :data:`RELEASES` with the digest
each is checked against: torchvision's ResNet / ResNeXt, Cadene's SE-ResNet and IBN-Net's
v1.0 release (Pan et al., ECCV 2018). Their file names follow torch.hub's convention of
carrying the first hex digits of the file's SHA-256 (``resnet50-19c8e357.pth``), and
those 8 digits are exactly what torch.hub's own ``check_hash`` verifies for them. Where
:data:`RELEASES` holds only that prefix it is what a download is checked against, the same
check as torch.hub's; the full digests of those files were not computed here, because the
release hosts cannot be reached from the machine this table was written on. The full
digest is recorded where it is known from public material (``resnet50_ibn_a``), and a
full digest in the table is checked in full. A URL outside the table is checked against
the prefix in its name when it has one, else against nothing (a warning says so). A wrong
digest is an error; the bad file is removed. A local path needs no network.

The cache is ``$REIDLAB_CACHE`` or ``~/.cache/reidlab``, in its ``pretrained/`` folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger("reidlab")

_HUB_DIGEST = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9.]+$")
_TORCHVISION = "https://download.pytorch.org/models/"
_CADENE = "https://data.lip6.fr/cadene/pretrainedmodels/"
_IBN_NET = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/"

#: release name -> (URL, SHA-256 or its leading hex digits: the torch.hub prefix in the
#: file name, except where the full digest is known; see the module docstring). IBN-Net's
#: names put the variant last (``resnet50_ibn_a`` is reidlab's ``ibn_a_resnet50``,
#: ``se_resnet101_ibn_a`` its ``se_ibn_a_resnet101``); its ``resnext101_ibn_a`` is a
#: ResNeXt-101 32x4d and ``resnet18/34_ibn_a`` are basic-block IBN-a networks, for which
#: reidlab registers no name. ``model.pretrained`` takes a URL or a path, not these names.
RELEASES: dict[str, tuple[str, str]] = {
    "resnet18": (_TORCHVISION + "resnet18-5c106cde.pth", "5c106cde"),
    "resnet34": (_TORCHVISION + "resnet34-333f7ec4.pth", "333f7ec4"),
    "resnet50": (_TORCHVISION + "resnet50-19c8e357.pth", "19c8e357"),
    "resnet101": (_TORCHVISION + "resnet101-5d3b4d8f.pth", "5d3b4d8f"),
    "resnet152": (_TORCHVISION + "resnet152-b121ed2d.pth", "b121ed2d"),
    "resnext50_32x4d": (_TORCHVISION + "resnext50_32x4d-7cdf4587.pth", "7cdf4587"),
    "resnext101_32x8d": (_TORCHVISION + "resnext101_32x8d-8ba56ff5.pth", "8ba56ff5"),
    "se_resnet50": (_CADENE + "se_resnet50-ce0d4300.pth", "ce0d4300"),
    "se_resnet101": (_CADENE + "se_resnet101-7e38fcc6.pth", "7e38fcc6"),
    "resnet18_ibn_a": (_IBN_NET + "resnet18_ibn_a-2f571257.pth", "2f571257"),
    "resnet34_ibn_a": (_IBN_NET + "resnet34_ibn_a-94bc1577.pth", "94bc1577"),
    "resnet50_ibn_a": (
        _IBN_NET + "resnet50_ibn_a-d9d0bb7b.pth",
        "d9d0bb7b2ba34d7e6e12c4616c9d233914762e49fbb9fcb49d7f4d65da6f759c",
    ),
    "resnet101_ibn_a": (_IBN_NET + "resnet101_ibn_a-59ea0ac6.pth", "59ea0ac6"),
    "resnext101_ibn_a": (_IBN_NET + "resnext101_ibn_a-6ace051d.pth", "6ace051d"),
    "se_resnet101_ibn_a": (_IBN_NET + "se_resnet101_ibn_a-fabed4e2.pth", "fabed4e2"),
    "resnet50_ibn_b": (_IBN_NET + "resnet50_ibn_b-9ca61e85.pth", "9ca61e85"),
    "resnet101_ibn_b": (_IBN_NET + "resnet101_ibn_b-c55f6dba.pth", "c55f6dba"),
}


class DigestError(ValueError):
    """A downloaded or cached file does not have the SHA-256 recorded for its URL."""


def cache_dir() -> Path:
    """Where downloaded weights are kept (``$REIDLAB_CACHE/pretrained``)."""
    root = os.environ.get("REIDLAB_CACHE") or Path.home() / ".cache" / "reidlab"
    return Path(root) / "pretrained"


def expected_digest(url: str) -> str | None:
    """The SHA-256 (or its leading digits) ``url`` is checked against; None if unknown."""
    for known, digest in RELEASES.values():
        if known == url:
            return digest
    match = _HUB_DIGEST.search(urlparse(url).path)
    return match.group(1) if match else None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, url: str, digest: str | None) -> None:
    if digest is None:
        return
    actual = sha256_of(path)
    if not actual.startswith(digest.lower()):
        path.unlink(missing_ok=True)
        raise DigestError(f"{url}: the file's SHA-256 is {actual}, expected {digest}; the "
                          "file was deleted (a damaged download, or another file at that URL)")


def fetch(url: str, digest: str | None = None, folder: Path | None = None) -> Path:
    """The local copy of ``url``, downloaded into the cache on first use and checked
    against ``digest`` (default: :func:`expected_digest`) every time it is used.

    Raises:
        DigestError: the file does not match its digest (it is removed).
        OSError: the download failed (offline: give a local path instead).
    """
    digest = digest or expected_digest(url)
    folder = folder or cache_dir()
    name = Path(urlparse(url).path).name or "weights.pth"
    dest = folder / name
    if dest.is_file():
        _check(dest, url, digest)
        return dest
    if digest is None:
        log.warning("%s: no SHA-256 is known for this URL; the download is not verified", url)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{name}.{os.getpid()}.part")
    log.info("downloading %s into %s", url, folder)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:  # noqa: S310
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        _check(tmp, url, digest)
        os.replace(tmp, dest)
    except (urllib.error.URLError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise OSError(f"could not download {url}: {reason} (without network, give "
                      "model.pretrained a local file)") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest

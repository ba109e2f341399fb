"""Image decoding and the torch ``Dataset`` over image records.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` when it is installed (the
``fast`` extra), otherwise by Pillow, whose wheels bundle libjpeg-turbo too; both use the
accurate integer DCT and fancy upsampling, so they give the same pixels up to rounding.
Other formats (PNG, BMP, ...) go through Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from reidlab.data.records import ImageRecord

try:
    import simplejpeg
except ImportError:  # optional: the ``fast`` extra
    simplejpeg = None

JPEG_MAGIC = b"\xff\xd8\xff"


class ImageDecodeError(OSError):
    """An image file exists but cannot be decoded."""


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            # Composite on black rather than keep undefined colours under transparent pixels.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return np.array(Image.alpha_composite(background, rgba).convert("RGB"))
        return np.array(img.convert("RGB"))


def decode_image(path: str | Path, use_simplejpeg: bool | None = None) -> torch.Tensor:
    """Read an image file as an RGB tensor.

    Args:
        path: a JPEG, PNG or any other format Pillow reads; grayscale, palette, CMYK and
            RGBA images are converted to RGB (alpha composited on black).
        use_simplejpeg: decode JPEGs with simplejpeg (True), Pillow (False) or simplejpeg
            when installed (None). JPEGs simplejpeg rejects (e.g. CMYK) go to Pillow.

    Returns:
        A ``uint8`` tensor of shape ``(3, H, W)``.

    Raises:
        FileNotFoundError: the file does not exist (naming it).
        ImageDecodeError: the file cannot be decoded (naming it).
        ImportError: ``use_simplejpeg=True`` without simplejpeg installed.
    """
    if use_simplejpeg and simplejpeg is None:
        raise ImportError("decode_image: use_simplejpeg=True needs the simplejpeg package")
    if use_simplejpeg is None:
        use_simplejpeg = simplejpeg is not None
    data = Path(path).read_bytes()
    array = None
    if use_simplejpeg and data.startswith(JPEG_MAGIC):
        try:
            array = simplejpeg.decode_jpeg(
                data, colorspace="RGB", fastdct=False, fastupsample=False
            )  # (H, W, 3)
        except ValueError:
            array = None  # a JPEG variant simplejpeg does not handle; Pillow reads it below
    if array is None:
        try:
            array = _decode_pillow(data)  # (H, W, 3)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ImageDecodeError(f"cannot decode image {path}: {err}") from err
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class ImageDataset(Dataset):
    """Decoded, transformed images of a list of records.

    Items are ``(image, pid, camid, index)``: ``image`` is ``transform(uint8 (3, H, W))``
    (the decoded tensor itself when ``transform`` is None) and ``index`` the record's
    position, for features that must be traced back to their records.

    With ``cache=True`` each decoded uint8 image is kept in memory after its first read, so
    later epochs skip decoding; the transform still runs on every read. That costs
    ``3 * H * W`` bytes an image: about 25 KB for Market-1501's 128x64 boxes, so 0.32 GB
    for its 12,936 train images. Each DataLoader worker process keeps its own cache, which
    lives only as long as the worker: use ``num_workers=0`` or ``persistent_workers=True``,
    and count the memory once per worker.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: bool = False,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.cache = cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> torch.Tensor:
        """The decoded uint8 ``(3, H, W)`` image of record ``index`` (cached if enabled)."""
        image = self._cache.get(index)
        if image is None:
            image = decode_image(self.records[index].path)
            if self.cache:
                self._cache[index] = image
        return image

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        record = self.records[index]
        image = self.load(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, record.pid, record.camid, index

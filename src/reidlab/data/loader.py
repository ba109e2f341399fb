"""Image decoding and the torch ``Dataset`` over image records.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` when it is installed (the
``fast`` extra), otherwise by Pillow, whose wheels bundle libjpeg-turbo too; both use the
accurate integer DCT and fancy upsampling, so they give the same pixels up to rounding.
Other formats (PNG, BMP, ...) go through Pillow.

Given a ``min_size``, a JPEG stored at least twice as large as that is decoded at a
reduced scale (1/2, 1/4, 1/8: libjpeg-turbo's DCT scaling, through simplejpeg's
``min_factor`` or Pillow's ``draft``), never below ``min_size``: the inverse DCT then does
part of the downscaling for a fraction of the decoding time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from reidlab.data.records import ImageRecord
from reidlab.data.transforms import Resize

try:
    import simplejpeg
except ImportError:  # optional: the ``fast`` extra
    simplejpeg = None

JPEG_MAGIC = b"\xff\xd8\xff"


class ImageStore(Protocol):
    """Decoded ``uint8`` ``(3, H, W)`` images by index (a ``cache.DecodedImages``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> torch.Tensor: ...


class ImageDecodeError(OSError):
    """An image file exists but cannot be decoded."""


def _decode_pillow(data: bytes, min_size: tuple[int, int] | None = None) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if min_size is not None and img.format == "JPEG":
            # draft picks the largest scale 1/1 .. 1/8 whose size is at least the requested
            img.draft(img.mode, (min_size[1], min_size[0]))
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            # Composite on black rather than keep undefined colours under transparent pixels.
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            return np.array(Image.alpha_composite(background, rgba).convert("RGB"))
        return np.array(img.convert("RGB"))


def decode_image(
    path: str | Path,
    use_simplejpeg: bool | None = None,
    min_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Read an image file as an RGB tensor.

    Args:
        path: a JPEG, PNG or any other format Pillow reads; grayscale, palette, CMYK and
            RGBA images are converted to RGB (alpha composited on black).
        use_simplejpeg: decode JPEGs with simplejpeg (True), Pillow (False) or simplejpeg
            when installed (None). JPEGs simplejpeg rejects (e.g. CMYK) go to Pillow.
        min_size: ``(height, width)`` the caller will resize to; a JPEG at least twice as
            large in both sides is decoded at the smallest DCT scale (1/2, 1/4 or 1/8)
            that keeps both sides at least this large. ``None``: full size.

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
    min_h, min_w = min_size if min_size is not None else (0, 0)
    if use_simplejpeg and data.startswith(JPEG_MAGIC):
        try:
            # min_factor=2: scale down only by a factor of at least 2, never below min_size
            array = simplejpeg.decode_jpeg(
                data, colorspace="RGB", fastdct=False, fastupsample=False,
                min_height=min_h, min_width=min_w, min_factor=2 if min_size else 1,
            )  # (H, W, 3)
        except ValueError:
            array = None  # a JPEG variant simplejpeg does not handle; Pillow reads it below
    if array is None:
        try:
            array = _decode_pillow(data, min_size)  # (H, W, 3)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ImageDecodeError(f"cannot decode image {path}: {err}") from err
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """A float image in ``[0, 1]`` rounded to ``uint8`` (values outside are clipped)."""
    return img.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def load_resized(path: str | Path, height: int, width: int) -> torch.Tensor:
    """Decode ``path`` (at reduced scale when it is at least twice as large) and resize it
    to ``(height, width)`` as the train transform does (bilinear, antialiased, in float).

    Returns:
        ``uint8`` ``(3, height, width)``: the float result rounded to 8 bits, what the
        decoded-image cache stores.
    """
    image = decode_image(path, min_size=(height, width))
    if image.shape[1:] == (height, width):
        return image
    return to_uint8(Resize(height, width)(image.float().div_(255.0)))


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

    With ``images`` (a :class:`~reidlab.data.cache.DecodedImages`, one store shared by every
    worker, already at training resolution) images are read from it instead of decoded.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        cache: bool = False,
        images: ImageStore | None = None,
    ) -> None:
        if images is not None and len(images) != len(records):
            raise ValueError(f"ImageDataset: {len(images)} cached images for "
                             f"{len(records)} records")
        self.records = list(records)
        self.transform = transform
        self.cache = cache
        self.images = images
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> torch.Tensor:
        """The decoded uint8 ``(3, H, W)`` image of record ``index`` (cached if enabled)."""
        if self.images is not None:
            return self.images[index]
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

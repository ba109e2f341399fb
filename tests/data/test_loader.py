"""Image decoding (simplejpeg and Pillow paths) and the image Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data import loader
from reidlab.data.loader import ImageDataset, ImageDecodeError, decode_image
from reidlab.data.records import ImageRecord

COLOUR = (200, 30, 60)


def _noise(h: int = 64, w: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth-plus-noise RGB pattern, harder on a JPEG decoder than a solid colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 255 / (w + h)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(params=[True, False], ids=["simplejpeg", "pillow"])
def use_simplejpeg(request: pytest.FixtureRequest) -> bool:
    if request.param and loader.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    return bool(request.param)


def test_jpeg_solid_colour(tmp_path: Path, use_simplejpeg: bool) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 16), COLOUR).save(path, quality=95)  # 8 wide, 16 high
    image = decode_image(path, use_simplejpeg=use_simplejpeg)
    assert image.dtype == torch.uint8
    assert image.shape == (3, 16, 8)
    expected = torch.tensor(COLOUR, dtype=torch.int16).view(3, 1, 1)
    assert (image.to(torch.int16) - expected).abs().max() <= 3


def test_png_exact(tmp_path: Path) -> None:
    pixels = _noise()
    path = tmp_path / "a.png"
    Image.fromarray(pixels).save(path)
    image = decode_image(path)
    assert image.shape == (3, 64, 32)
    assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_grayscale_becomes_rgb(tmp_path: Path, suffix: str, use_simplejpeg: bool) -> None:
    gray = _noise()[..., 0]
    path = tmp_path / f"g{suffix}"
    Image.fromarray(gray, mode="L").save(path)
    image = decode_image(path, use_simplejpeg=use_simplejpeg)
    assert image.shape == (3, 64, 32)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    if suffix == ".png":
        assert torch.equal(image[0], torch.from_numpy(gray))


def test_rgba_and_palette(tmp_path: Path) -> None:
    rgba = np.zeros((4, 2, 4), dtype=np.uint8)
    rgba[..., :3] = COLOUR
    rgba[:2, :, 3] = 255  # top half opaque, bottom half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    image = decode_image(tmp_path / "a.png")
    assert image.shape == (3, 4, 2)
    assert image[:, :2].flatten(1).T.tolist() == [list(COLOUR)] * 4
    assert image[:, 2:].sum() == 0  # composited on black

    Image.new("RGB", (2, 4), COLOUR).convert("P", palette=Image.Palette.ADAPTIVE).save(
        tmp_path / "p.png"
    )
    assert decode_image(tmp_path / "p.png")[:, 0, 0].tolist() == list(COLOUR)


@pytest.mark.parametrize("subsampling", [0, 2])  # 4:4:4 and 4:2:0
def test_simplejpeg_matches_pillow(tmp_path: Path, subsampling: int) -> None:
    if loader.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    path = tmp_path / "n.jpg"
    Image.fromarray(_noise(128, 64)).save(path, quality=90, subsampling=subsampling)
    fast = decode_image(path, use_simplejpeg=True).to(torch.int16)
    plain = decode_image(path, use_simplejpeg=False).to(torch.int16)
    assert fast.shape == plain.shape == (3, 128, 64)
    # Both are libjpeg-turbo with the same DCT and upsampling; allow rounding differences
    # between library versions.
    assert (fast - plain).abs().max() <= 2
    assert (fast - plain).abs().float().mean() < 0.1


def test_pillow_used_without_simplejpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "simplejpeg", None)
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 16), COLOUR).save(path)
    assert decode_image(path).shape == (3, 16, 8)
    with pytest.raises(ImportError, match="simplejpeg"):
        decode_image(path, use_simplejpeg=True)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path, use_simplejpeg: bool) -> None:
    path = tmp_path / "c.jpg"
    Image.new("RGB", (8, 8), COLOUR).convert("CMYK").save(path)
    image = decode_image(path, use_simplejpeg=use_simplejpeg)
    assert image.shape == (3, 8, 8)
    expected = torch.tensor(COLOUR, dtype=torch.int16).view(3, 1, 1)
    assert (image.to(torch.int16) - expected).abs().max() <= 8


def test_jpeg_rejected_by_simplejpeg_goes_to_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if loader.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")

    def reject(*args: object, **kwargs: object) -> None:
        raise ValueError("unsupported JPEG variant")

    monkeypatch.setattr(loader.simplejpeg, "decode_jpeg", reject)
    path = tmp_path / "a.jpg"
    Image.new("RGB", (8, 16), COLOUR).save(path, quality=95)
    image = decode_image(path, use_simplejpeg=True)
    expected = torch.tensor(COLOUR, dtype=torch.int16).view(3, 1, 1)
    assert (image.to(torch.int16) - expected).abs().max() <= 3


@pytest.mark.parametrize(
    "content",
    [b"\xff\xd8\xff\xe0 truncated jpeg", b"plain text", b""],
    ids=["jpeg", "text", "empty"],
)
def test_unreadable_file_names_path(tmp_path: Path, content: bytes, use_simplejpeg: bool) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        decode_image(path, use_simplejpeg=use_simplejpeg)


def test_truncated_jpeg_is_an_error(tmp_path: Path, use_simplejpeg: bool) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_noise()).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        decode_image(path, use_simplejpeg=use_simplejpeg)


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        decode_image(tmp_path / "absent.jpg")


def _records(tmp_path: Path) -> list[ImageRecord]:
    records = []
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (2, 4), colour).save(path)
        records.append(ImageRecord(str(path), pid=10 + i, camid=i, domain="test"))
    return records


def test_image_dataset_items(tmp_path: Path) -> None:
    dataset = ImageDataset(_records(tmp_path), transform=lambda x: x.float() / 255)
    assert len(dataset) == 2
    image, pid, camid, index = dataset[1]
    assert image.dtype == torch.float32 and image.shape == (3, 4, 2)
    assert image[:, 0, 0].tolist() == [0.0, 0.0, 1.0]
    assert (pid, camid, index) == (11, 1, 1)
    raw, *_ = ImageDataset(_records(tmp_path))[0]
    assert raw.dtype == torch.uint8


@pytest.mark.parametrize("cache", [True, False])
def test_image_dataset_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: bool) -> None:
    calls = []
    real = loader.decode_image

    def counting(path: str | Path) -> torch.Tensor:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(loader, "decode_image", counting)
    seen = []
    dataset = ImageDataset(_records(tmp_path), transform=lambda x: seen.append(x) or x, cache=cache)
    for _ in range(3):
        first = dataset[0][0]
    assert len(calls) == (1 if cache else 3)
    assert len(seen) == 3  # the transform runs on every read
    assert first[:, 0, 0].tolist() == [255, 0, 0]

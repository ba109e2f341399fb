import pytest
import torch

from reidlab.config import AugmentConfig
from reidlab.data.batch_transforms import BatchAugment, DeviceAugmentLoader, draw_sample
from reidlab.data.transforms import build_transforms

H, W = 32, 16


def _per_image(aug: AugmentConfig, images: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """The reference: the per-image train pipeline, the global generator seeded per sample
    as SeededDataset does."""
    t = build_transforms(aug, H, W, train=True)
    out = []
    for img, seed in zip(images, seeds, strict=True):
        torch.manual_seed(seed)
        out.append(t(img))
    return torch.stack(out)


@pytest.mark.parametrize("aug", [
    AugmentConfig(),
    AugmentConfig(pad=0),
    AugmentConfig(flip_p=1.0, erasing_p=1.0, pad=3),
    AugmentConfig(flip_p=0.0, erasing_p=0.0),
    AugmentConfig(erasing_area=(0.3, 0.9), erasing_aspect=0.5),  # many failed attempts
])
def test_batch_transform_equals_the_per_image_transform(aug):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 3, H, W), dtype=torch.uint8, generator=g)
    seeds = [(2**61 + 7919 * i) % 2**63 for i in range(24)]
    expected = _per_image(aug, images, seeds)
    got = BatchAugment(aug, H, W)(images, torch.tensor(seeds))
    assert got.dtype == torch.float32 and got.shape == (24, 3, H, W)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


def test_the_draws_vary_and_cover_every_choice():
    aug = AugmentConfig(pad=2)
    draws = [draw_sample(aug, H, W, s) for s in range(400)]
    flips = sum(d.flip for d in draws)
    erased = sum(d.erase is not None for d in draws)
    assert 150 < flips < 250 and 150 < erased < 250  # p = 0.5 each
    assert {d.top for d in draws} == set(range(5)) == {d.left for d in draws}
    for d in draws:
        if d.erase:
            t, s, h, w = d.erase
            assert 0 <= t and t + h <= H and 0 <= s and s + w <= W and h < H and w < W


def test_flip_and_crop_by_hand():
    # a 1-channel pattern copied to 3 channels; no erasing, no normalisation offset
    aug = AugmentConfig(flip_p=1.0, erasing_p=0.0, pad=1, mean=(0, 0, 0), std=(1, 1, 1))
    img = torch.arange(H * W, dtype=torch.int64).view(H, W) % 251
    images = img.to(torch.uint8).expand(3, H, W)[None].clone()
    d = draw_sample(aug, H, W, 5)
    padded = torch.zeros(H + 2, W + 2, dtype=torch.int64)
    padded[1:-1, 1:-1] = img.flip(1)
    window = padded[d.top:d.top + H, d.left:d.left + W].float() / 255
    out = BatchAugment(aug, H, W)(images, [5])
    assert torch.allclose(out[0, 1], window, atol=1e-7)


def test_device_loader_wraps_batches():
    aug = AugmentConfig()
    images = torch.randint(0, 256, (4, 3, H, W), dtype=torch.uint8)
    batch = (images, torch.arange(4), torch.zeros(4, dtype=torch.long), torch.arange(4),
             torch.tensor([1, 2, 3, 4]))
    loader = DeviceAugmentLoader([batch, batch], BatchAugment(aug, H, W), torch.device("cpu"))
    assert len(loader) == 2
    out = list(loader)
    assert len(out) == 2 and out[0][0].shape == (4, 3, H, W)
    assert torch.equal(out[0][0], out[1][0])  # same seeds, same augmentation
    assert torch.equal(out[0][1], torch.arange(4))


def test_wrong_shapes_name_the_problem():
    t = BatchAugment(AugmentConfig(), H, W)
    with pytest.raises(ValueError, match="32x16"):
        t(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [0, 1])
    with pytest.raises(ValueError, match="seeds"):
        t(torch.zeros(2, 3, H, W, dtype=torch.uint8), [0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_transform_equals_cpu():
    aug = AugmentConfig()
    images = torch.randint(0, 256, (16, 3, H, W), dtype=torch.uint8)
    seeds = list(range(16))
    cpu = BatchAugment(aug, H, W)(images, seeds)
    gpu = BatchAugment(aug, H, W)(images.cuda(), seeds)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)

import math

import pytest
import torch

from reidlab.config import AugmentConfig
from reidlab.data.transforms import (
    Compose,
    Normalize,
    Pad,
    RandomCrop,
    RandomErasing,
    RandomHorizontalFlip,
    Resize,
    ToFloat,
    build_transforms,
)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_output_shape_and_dtype(train, dtype):
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 40, 20), dtype=torch.uint8).to(dtype)
    if dtype.is_floating_point:
        img = img / 255
    out = build_transforms(AugmentConfig(), 64, 32, train=train)(img)
    assert out.shape == (3, 64, 32) and out.dtype == torch.float32


def test_flip():
    img = torch.rand(3, 5, 4)
    assert torch.equal(RandomHorizontalFlip(1.0)(img), torch.flip(img, dims=[2]))
    assert torch.equal(RandomHorizontalFlip(0.0)(img), img)


def test_normalisation_of_one_pixel_by_hand():
    img = torch.zeros(3, 8, 4, dtype=torch.uint8)
    img[:, 2, 1] = torch.tensor([51, 102, 153])  # 0.2, 0.4, 0.6
    aug = AugmentConfig()
    out = build_transforms(aug, 8, 4, train=False)(img)
    for c, v in enumerate([0.2, 0.4, 0.6]):
        assert out[c, 2, 1].item() == pytest.approx((v - aug.mean[c]) / aug.std[c], rel=1e-6)
        assert out[c, 0, 0].item() == pytest.approx(-aug.mean[c] / aug.std[c], rel=1e-6)


def test_resize_keeps_a_constant_image_constant():
    img = torch.full((3, 40, 20), 0.3)
    for size in [(64, 32), (16, 8)]:
        out = Resize(*size)(img)
        assert out.shape == (3, *size)
        assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-6)


def test_pad_and_crop_is_a_shifted_window():
    img = torch.arange(1, 3 * 8 * 6 + 1, dtype=torch.float32).view(3, 8, 6)
    t = Compose([Pad(2), RandomCrop(8, 6)])
    shifts = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = t(img)
        torch.manual_seed(seed)
        assert torch.equal(t(img), out)
        assert out.shape == img.shape
        # the window's top-left in the padded image, found from a known pixel
        (ys, xs) = torch.nonzero(out[0] == img[0, 3, 3], as_tuple=True)
        dy, dx = 3 - int(ys[0]), 3 - int(xs[0])
        assert -2 <= dy <= 2 and -2 <= dx <= 2
        shifts.add((dy, dx))
        for i in range(8):
            for j in range(6):
                si, sj = i + dy, j + dx
                if 0 <= si < 8 and 0 <= sj < 6:
                    assert torch.equal(out[:, i, j], img[:, si, sj])
                else:
                    assert torch.equal(out[:, i, j], torch.zeros(3))
    assert len(shifts) > 1


def test_erasing_box_area_and_aspect_within_bounds():
    h_img, w_img = 128, 64
    erase = RandomErasing(p=1.0, area=(0.02, 0.4), aspect=0.3)
    for seed in range(30):
        torch.manual_seed(seed)
        img = torch.randn(3, h_img, w_img)
        img[img == 0] = 1.0
        out = erase(img)
        changed = (out != img).any(dim=0)
        assert torch.equal(changed, (out == 0).all(dim=0))  # filled with 0 in every channel
        rows = torch.nonzero(changed.any(dim=1)).flatten()
        cols = torch.nonzero(changed.any(dim=0)).flatten()
        h = int(rows[-1] - rows[0] + 1)
        w = int(cols[-1] - cols[0] + 1)
        assert int(changed.sum()) == h * w  # a full rectangle
        # h = round(sqrt(A r)), w = round(sqrt(A / r)): A and r lie in these intervals
        a_lo, a_hi = (h - 0.5) * (w - 0.5), (h + 0.5) * (w + 0.5)
        r_lo, r_hi = (h - 0.5) / (w + 0.5), (h + 0.5) / (w - 0.5)
        area = h_img * w_img
        assert a_hi >= 0.02 * area and a_lo <= 0.4 * area
        assert r_hi >= 0.3 and r_lo <= 1 / 0.3
        assert 0.02 * 0.9 <= h * w / area <= 0.4 * 1.1


def test_erasing_p0_does_nothing_and_input_is_not_modified():
    img = torch.randn(3, 32, 16)
    before = img.clone()
    assert torch.equal(RandomErasing(p=0.0)(img), img)
    torch.manual_seed(0)
    RandomErasing(p=1.0)(img)
    assert torch.equal(img, before)


def test_test_transform_is_deterministic():
    img = torch.randint(0, 256, (3, 50, 30), dtype=torch.uint8)
    t = build_transforms(AugmentConfig(), 64, 32, train=False)
    assert torch.equal(t(img), t(img))
    assert [type(s) for s in t.transforms] == [ToFloat, Resize, Normalize]


def test_train_pipeline_order_and_repr():
    t = build_transforms(AugmentConfig(), 64, 32, train=True)
    names = [type(s).__name__ for s in t.transforms]
    assert names == [
        "ToFloat",
        "Resize",
        "RandomHorizontalFlip",
        "Pad",
        "RandomCrop",
        "Normalize",
        "RandomErasing",
    ]
    text = repr(t)
    assert "Pad(pad=10)" in text and "RandomErasing(p=0.5" in text
    no_pad = build_transforms(AugmentConfig(pad=0), 64, 32, train=True)
    assert "Pad" not in repr(no_pad)


def test_train_transform_uses_the_global_seed():
    img = torch.randint(0, 256, (3, 64, 32), dtype=torch.uint8)
    t = build_transforms(AugmentConfig(), 64, 32, train=True)
    torch.manual_seed(4)
    a = t(img)
    torch.manual_seed(4)
    b = t(img)
    assert torch.equal(a, b)
    assert not math.isnan(float(a.sum()))

"""Backbones: every registered name runs; parameter counts match the published
architectures; public checkpoints (mirrored by plain reference modules written here) load
and compute what the release computes."""

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from reidlab.models import build_backbone, check_checkpoint, load_pretrained, parameter_counts
from reidlab.models.backbones import ResNet, parameter_count
from reidlab.registry import BACKBONES

FAMILIES = ("resnet50", "resnet101", "resnext101_32x8d")
PREFIXES = ("", "se_", "ibn_a_", "ibn_b_", "se_ibn_a_", "se_ibn_b_")
EXPECTED_NAMES = {"resnet18", "resnet18_w32", "resnet34"} | {
    p + f for p in PREFIXES for f in FAMILIES
}

# Published parameter counts with the 1000-way ImageNet classifier.
PUBLISHED = {
    # torchvision model documentation
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnext101_32x8d": 88_791_336,
    # Cadene pretrainedmodels SENet (SE with biases), e.g. osmr/imgclsmob tables
    "se_resnet50": 28_088_024,
    "se_resnet101": 49_326_872,
    # IBN-Net (osmr/imgclsmob ibn_resnet / ibnb_resnet): IN affine = BN affine parameters
    "ibn_a_resnet50": 25_557_032,
    "ibn_a_resnet101": 44_549_160,
    "ibn_b_resnet50": 25_558_568,
    "ibn_b_resnet101": 44_550_696,
    # bias-free SE-ResNet (IBN-Net's SELayer, senet.pytorch tables); IBN-a adds nothing
    "se_ibn_a_resnet50": 28_071_976,
    "se_ibn_a_resnet101": 49_292_328,
}

HEAVY = {n for n in EXPECTED_NAMES if "101" in n}


def test_registered_names():
    assert set(BACKBONES.names()) == EXPECTED_NAMES


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_forward_backward_and_shapes(name):
    torch.manual_seed(0)
    # Heavy 101-layer nets: two blocks per stage keep every option (first/last block rules
    # included) at a fraction of the cost. The full depth with last_stride 2 is checked on
    # the meta device (shapes only, nothing allocated or computed).
    kwargs = {"layers": (2, 2, 2, 2)} if name in HEAVY else {}
    model = BACKBONES.get(name)(last_stride=1, **kwargs)
    x = torch.randn(2, 3, 64, 32)
    y = model(x)
    c = {"resnet18": 512, "resnet34": 512, "resnet18_w32": 256}.get(name, 2048)
    assert y.shape == (2, c, 4, 2)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.device("meta"), torch.no_grad():
        full = BACKBONES.get(name)(last_stride=2)
        assert full(torch.empty(2, 3, 64, 32)).shape == (2, c, 2, 1)


def test_build_backbone_default_last_stride():
    assert build_backbone("resnet18")(torch.randn(1, 3, 64, 32)).shape == (1, 512, 4, 2)
    with pytest.raises(KeyError, match="resnet50"):
        build_backbone("resnet05")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    assert parameter_count(name) == PUBLISHED[name]


def test_half_width_resnet18_counted_by_hand():
    """ResNet-18 with 32 base channels and a 1000-class fc, counted layer by layer."""
    conv3 = lambda i, o: 9 * i * o  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    stem = 49 * 3 * 32 + bn(32)
    total = stem
    c_in = 32
    for c in (32, 64, 128, 256):
        first = conv3(c_in, c) + conv3(c, c) + 2 * bn(c)
        if c != c_in:
            first += c_in * c + bn(c)  # 1x1 downsample
        total += first + 2 * conv3(c, c) + 2 * bn(c)
        c_in = c
    total += 256 * 1000 + 1000
    assert parameter_count("resnet18_w32") == total == 3_055_880


def _se_params(layers, bias):
    total = 0
    for i, n in enumerate(layers):
        c = 256 * 2**i  # bottleneck output channels
        total += n * (2 * c * (c // 16) + ((c // 16) + c if bias else 0))
    return total


def test_parameter_invariants_for_every_name():
    counts = parameter_counts()
    assert set(counts) == EXPECTED_NAMES
    layers = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
    layers["resnext101_32x8d"] = layers["resnet101"]
    for family in FAMILIES:
        plain = counts[family]
        ibn_b = 2 * (256 + 512)  # affine IN after the last block of layer1 and layer2
        assert counts["ibn_a_" + family] == plain
        assert counts["ibn_b_" + family] == plain + ibn_b
        assert counts["se_" + family] == plain + _se_params(layers[family], bias=True)
        no_bias = _se_params(layers[family], bias=False)
        assert counts["se_ibn_a_" + family] == plain + no_bias
        assert counts["se_ibn_b_" + family] == plain + no_bias + ibn_b


def test_ibn_placement():
    with torch.device("meta"):  # structure only, nothing allocated
        a = BACKBONES.get("ibn_a_resnext101_32x8d")()
        b = BACKBONES.get("ibn_b_resnet101")()
    assert a.layer1[0].bn1.IN.num_features == 128 and a.layer1[0].bn1.BN.num_features == 128
    assert all(
        hasattr(a.get_submodule(f"layer{i}")[j].bn1, "IN") for i in (1, 2, 3) for j in (0, -1)
    )
    assert isinstance(a.layer4[0].bn1, nn.BatchNorm2d) and isinstance(a.bn1, nn.BatchNorm2d)
    assert isinstance(b.bn1, nn.InstanceNorm2d)
    with_in = {n for n, m in b.named_modules() if n.endswith(".IN")}
    assert with_in == {"layer1.2.IN", "layer2.3.IN"}


# ---- plain reference modules mirroring the public releases' code and key layouts ----


class RefIBN(nn.Module):  # IBN-Net modules.IBN, ratio 0.5
    def __init__(self, planes):
        super().__init__()
        self.split = int(planes * 0.5)
        self.IN = nn.InstanceNorm2d(self.split, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.split)

    def forward(self, x):
        a, b = torch.split(x, self.split, 1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), 1)


class RefSEModule(nn.Module):  # Cadene senet.SEModule: 1x1 convolutions with bias
    def __init__(self, c):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 16, kernel_size=1, padding=0)
        self.fc2 = nn.Conv2d(c // 16, c, kernel_size=1, padding=0)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class RefSELayer(nn.Module):  # IBN-Net modules.SELayer: bias-free Linear layers
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(c, c // 16, bias=False),
            nn.ReLU(),
            nn.Linear(c // 16, c, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c = x.shape[:2]
        return x * self.fc(x.mean((2, 3))).view(b, c, 1, 1)


class RefBasic(nn.Module):  # torchvision BasicBlock
    expansion = 1

    def __init__(self, inplanes, planes, stride, downsample, **_):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, ibn, se, caffe, groups, width):
        super().__init__()
        d = int(math.floor(planes * width / 64)) * groups
        self.conv1 = nn.Conv2d(inplanes, d, 1, stride if caffe else 1, bias=False)
        self.bn1 = RefIBN(d) if ibn == "a" else nn.BatchNorm2d(d)
        self.conv2 = nn.Conv2d(d, d, 3, 1 if caffe else stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(d)
        self.conv3 = nn.Conv2d(d, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se_kind = se
        if se == "cadene":
            self.se_module = RefSEModule(planes * 4)
        elif se == "ibnnet":
            self.se = RefSELayer(planes * 4)
        self.IN = nn.InstanceNorm2d(planes * 4, affine=True) if ibn == "b" else None
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se_kind == "cadene":
            out = self.se_module(out)
        elif self.se_kind == "ibnnet":
            out = self.se(out)
        out = out + (x if self.downsample is None else self.downsample(x))
        if self.IN is not None:
            out = self.IN(out)
        return torch.relu(out)


class RefNet(nn.Module):
    """torchvision ResNet, IBN-Net ResNet_IBN / ResNeXt_IBN / SE-ResNet-IBN, or Cadene SENet."""

    def __init__(self, release, layers, basic=False, groups=1, width=64):
        super().__init__()
        cadene = release in ("senet", "senext")
        bn1 = nn.InstanceNorm2d(64, affine=True) if release == "ibn_b" else nn.BatchNorm2d(64)
        if cadene:
            stem = [("conv1", nn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("bn1", bn1)]
            stem += [("relu1", nn.ReLU()), ("pool", nn.MaxPool2d(3, stride=2, ceil_mode=True))]
            self.layer0 = nn.Sequential(OrderedDict(stem))
        else:
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn1
            self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        ibn_cfg = {"ibn_a": "aaa-", "se_ibn_a": "aaa-", "ibn_b": "bb--"}.get(release, "----")
        se = {"senet": "cadene", "senext": "cadene", "se_ibn_a": "ibnnet"}.get(release)
        block = RefBasic if basic else RefBottleneck
        inplanes = 64
        for i, n in enumerate(layers):
            planes, stride = 64 * 2**i, 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            blocks = []
            for j in range(n):
                ibn = ibn_cfg[i]
                if ibn == "b" and (j == 0 or j < n - 1):  # IBN-Net _make_layer
                    ibn = None
                blocks.append(
                    block(
                        inplanes,
                        planes,
                        stride if j == 0 else 1,
                        downsample if j == 0 else None,
                        ibn=ibn,
                        se=se,
                        caffe=release == "senet",
                        groups=groups,
                        width=width,
                    )
                )
                inplanes = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        classifier = nn.Linear(inplanes, 1000)
        if cadene:
            self.last_linear = classifier
        else:
            self.fc = classifier

    def forward(self, x):
        if hasattr(self, "layer0"):
            x = self.layer0(x)
        else:
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@torch.no_grad()
def randomise(model, seed=0):
    """He-normal weights, non-trivial norm affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        r = torch.randn(t.shape, generator=g)
        u = torch.rand(t.shape, generator=g)
        if name.endswith("running_var") or (t.dim() == 1 and name.endswith("weight")):
            t.copy_(0.5 + u)
        elif t.dim() == 1:  # running means and biases
            t.copy_(0.1 * r)
        else:
            t.copy_(r * math.sqrt(2.0 / t[0].numel()))
    return model


# ResNet-50's first two stages (where IBN-b's last-block rule shows), a shorter tail.
R50 = {"layers": (3, 4, 2, 2)}
X2 = {"layers": (2, 2, 2, 2)}
RELEASES = {  # id: (reidlab name, its overrides, reference release, reference options)
    "torchvision-resnet18": (
        "resnet18",
        {},
        "torchvision",
        {"layers": (2, 2, 2, 2), "basic": True},
    ),
    "torchvision-resnet50": ("resnet50", R50, "torchvision", R50),
    "torchvision-resnext": (
        "resnext101_32x8d",
        X2,
        "torchvision",
        {**X2, "groups": 32, "width": 8},
    ),
    "ibnnet-resnet50_ibn_a": ("ibn_a_resnet50", R50, "ibn_a", R50),
    "ibnnet-resnet50_ibn_b": ("ibn_b_resnet50", R50, "ibn_b", R50),
    "ibnnet-resnext101_ibn_a": (
        "ibn_a_resnext101_32x8d",
        {**X2, "width_per_group": 4},
        "ibn_a",
        {**X2, "groups": 32, "width": 4},
    ),
    "ibnnet-se_resnet_ibn_a": ("se_ibn_a_resnet50", R50, "se_ibn_a", R50),
    "cadene-se_resnet50": ("se_resnet50", R50, "senet", R50),
    "cadene-se_resnext": ("se_resnext101_32x8d", X2, "senext", {**X2, "groups": 32, "width": 8}),
}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_public_release_computes_the_same_function(release, tmp_path):
    name, overrides, ref_release, ref_options = RELEASES[release]
    ref = randomise(RefNet(ref_release, **ref_options)).eval()
    path = tmp_path / "release.pth"
    torch.save(ref.state_dict(), path)
    model = BACKBONES.get(name)(last_stride=2, **overrides)
    report = load_pretrained(model, path)
    assert report.ok and not report.zero_filled, report
    assert all(k.startswith(("fc.", "last_linear.")) for k in report.ignored)
    x = torch.randn(2, 3, 64, 32, dtype=torch.float64)
    expected = ref.double()(x)
    got = model.double().eval()(x)
    assert expected.abs().mean() > 0.1  # the comparison below is not vacuous
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_release_options_are_enforced_and_matter(tmp_path):
    ref = randomise(RefNet("senet", (2, 2, 2, 2))).eval()
    wrong = ResNet(layers=(2, 2, 2, 2), se=True)  # torchvision stride placement and pooling
    with pytest.raises(ValueError, match="stride_in='conv1'"):
        load_pretrained(wrong, ref.state_dict())
    # Same weights under the other stride placement compute something else.
    right = ResNet(layers=(2, 2, 2, 2), se=True, stride_in="conv1", stem_pool_ceil_mode=True)
    load_pretrained(right, ref.state_dict())
    other = ResNet(layers=(2, 2, 2, 2), se=True, stem_pool_ceil_mode=True)
    other.load_state_dict(right.state_dict())
    x = torch.randn(1, 3, 64, 32)
    right.eval(), other.eval()
    assert not torch.allclose(right(x), other(x), atol=1e-3)


def test_bias_free_se_is_zero_filled(tmp_path):
    ref = randomise(RefNet("se_ibn_a", (2, 2, 2, 2))).eval()
    model = ResNet(layers=(2, 2, 2, 2), se=True, ibn="a")  # SE with biases
    report = load_pretrained(model, {"state_dict": ref.state_dict()})
    assert report.ok and len(report.zero_filled) == 2 * 8
    assert report.zero_filled[0] == "layer1.0.se.fc1.bias"
    x = torch.randn(2, 3, 64, 32)
    torch.testing.assert_close(model.eval()(x), ref(x), rtol=1e-4, atol=1e-4)


def test_wrappers_prefixes_formats_and_reports(tmp_path, monkeypatch):
    ref = randomise(RefNet("torchvision", (2, 2, 2, 2), basic=True))
    state = {"module." + k: v for k, v in ref.state_dict().items()}
    torch.save({"model": state, "epoch": 3}, tmp_path / "wrapped.pth")
    report = check_checkpoint("resnet18", tmp_path / "wrapped.pth")  # with classifier
    assert report.ok and report.release == "torchvision" and not report.ignored
    from safetensors.torch import save_file

    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    backbone = build_backbone("resnet18", weights=tmp_path / "w.safetensors")
    torch.testing.assert_close(backbone.conv1.weight, ref.conv1.weight)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")  # a URL: fetched into the cache
    monkeypatch.setenv("REIDLAB_CACHE", str(tmp_path / "cache"))
    backbone = build_backbone("resnet18", weights=(tmp_path / "r18.pth").as_uri())
    torch.testing.assert_close(backbone.conv1.weight, ref.conv1.weight)
    assert (tmp_path / "cache" / "pretrained" / "r18.pth").is_file()

    partial = {k: v for k, v in ref.state_dict().items() if not k.startswith("layer4.1.")}
    partial["extra.weight"] = torch.zeros(1)
    report = load_pretrained(build_backbone("resnet18"), partial)
    assert not report.ok and "layer4.1.conv1.weight" in report.missing
    assert report.unexpected == ["extra.weight"]
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing"):
        build_backbone("resnet18", weights=tmp_path / "partial.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone("resnet18", weights=tmp_path / "nope.pth")


def test_shape_mismatch_names_key_and_shapes():
    ref = RefNet("torchvision", (2, 2, 2, 2), basic=True)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*\(64, 64, 3, 3\)"):
        load_pretrained(BACKBONES.get("resnet50")(), ref.state_dict())


def test_ibn_b_blocks_all_puts_in_after_every_block_of_layer1_and_layer2():
    with torch.device("meta"):
        last = BACKBONES.get("ibn_b_resnet50")()
        every = BACKBONES.get("ibn_b_resnet50")(ibn_b_blocks="all")
    assert {n for n, _ in last.named_modules() if n.endswith(".IN")} == {
        "layer1.2.IN", "layer2.3.IN"}
    expected = {f"layer1.{j}.IN" for j in range(3)} | {f"layer2.{j}.IN" for j in range(4)}
    assert {n for n, _ in every.named_modules() if n.endswith(".IN")} == expected
    assert isinstance(every.bn1, nn.InstanceNorm2d)


def test_torchvision_layout_se_has_no_bias_and_torchvision_strides():
    from reidlab.models.backbones.pretrained import TORCHVISION_LAYOUT

    with torch.device("meta"):
        se = BACKBONES.get("se_resnet50")(**TORCHVISION_LAYOUT)
    block = se.layer2[0]
    assert block.se.fc1.bias is None and block.se.fc2.bias is None
    assert block.se.fc1.out_features == 512 // 16  # reduction 16 on 4 x 128 channels
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert se.maxpool.padding == 1 and not se.maxpool.ceil_mode


def test_partial_initialisation_reports_fresh_and_unused_by_name(tmp_path, caplog):
    def saved(name):
        net = BACKBONES.get(name)(base_width=8)
        state = {k: torch.randn_like(v) if v.is_floating_point() else v
                 for k, v in net.state_dict().items()}
        torch.save(state, tmp_path / f"{name}.pth")
        return state, tmp_path / f"{name}.pth"

    state, path = saved("resnet50")
    with pytest.raises(ValueError, match="does not fit"):  # the silent partial load stays out
        build_backbone("se_ibn_a_resnet50", weights=path, base_width=8, se_bias=False)
    with caplog.at_level("WARNING"):
        net = build_backbone("se_ibn_a_resnet50", weights=path, partial=True, base_width=8,
                             se_bias=False)
    assert "partial initialisation" in caplog.text
    assert "layer4.2.se.fc1.weight" in caplog.text and "layer1.0.bn1.IN.weight" in caplog.text
    assert "layer1.0.bn1.weight" in caplog.text  # unused: IBN-a's halves took its place
    assert torch.equal(net.state_dict()["layer4.0.conv2.weight"], state["layer4.0.conv2.weight"])
    _, basic = saved("resnet18")  # 3x3 convolutions where a bottleneck has 1x1: refused
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*shape"):
        build_backbone("ibn_a_resnet50", weights=basic, partial=True, base_width=8)


def test_partial_load_into_ibn_b_keeps_in_fresh_and_lists_it(tmp_path):
    plain = BACKBONES.get("resnet50")(base_width=8)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in plain.state_dict().items()}
    net = BACKBONES.get("ibn_b_resnet50")(base_width=8)
    report = load_pretrained(net, state, partial=True)
    # the stem InstanceNorm keeps weight 1 / bias 0 instead of the batch norm's affine
    assert torch.equal(net.bn1.weight, torch.ones(8)) and torch.equal(net.bn1.bias, torch.zeros(8))
    assert {"bn1.weight", "bn1.bias"} <= set(report.unexpected)
    assert {"bn1.weight", "bn1.bias", "layer1.2.IN.weight", "layer2.3.IN.bias"} <= set(
        report.missing)
    assert torch.equal(net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    ibn_a = BACKBONES.get("ibn_a_resnet50")(base_width=8)
    report = load_pretrained(ibn_a, state, partial=True)
    assert "layer1.0.bn1.IN.weight" in report.missing and "layer1.0.bn1.BN.weight" in report.missing
    assert "layer1.0.bn1.weight" in report.unexpected


def test_model_config_width_layout_and_ibn_b_blocks_reach_the_backbone():
    from reidlab.config import ModelConfig
    from reidlab.models.build import build_model

    cfg = ModelConfig(backbone="se_ibn_b_resnet50", width=8, ibn_b_blocks="all",
                      layout="torchvision")
    model = build_model(cfg, num_classes=5)
    bb = model.backbone
    assert bb.conv1.out_channels == 8 and model.feat_dim == 8 * 8 * 4
    assert sum(n.endswith(".IN") for n, _ in bb.named_modules()) == 3 + 4
    assert bb.layer1[0].se.fc1.bias is None
    with pytest.raises(ValueError, match="model.width"):
        ModelConfig(width=6)


@pytest.mark.parametrize("name", ["resnet18", "se_ibn_a_resnet50", "resnext101_32x8d"])
def test_zero_init_residual_makes_every_block_the_identity(name):
    """With each branch's last batch norm at zero scale (and zero shift), a block without
    downsampling maps a non-negative input x to relu(x + 0) = x, whatever its other weights;
    the ordinary initialisation does not."""
    from reidlab.config import ModelConfig
    from reidlab.models.build import build_model

    torch.manual_seed(0)
    for zero in (True, False):
        model = build_model(ModelConfig(backbone=name, width=16, zero_init_residual=zero), 0)
        block = model.backbone.layer3[1].eval()  # layer3: no IBN-b IN after the sum
        channels = block.conv1.in_channels
        x = torch.rand(2, channels, 4, 2)
        with torch.no_grad():
            same = torch.allclose(block(x), x, atol=1e-6)
        assert same is zero

"""ONNX export: onnxruntime's features equal the engine's test features within 1e-4 for
each backbone family, on real images, with normalisation inside the graph and a dynamic
batch; the CLI; half precision and float input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")

from reidlab.cli import main  # noqa: E402
from reidlab.config import load_config  # noqa: E402
from reidlab.inference.export import check_pixels, export_checked, run_onnx  # noqa: E402
from reidlab.inference.extract import list_images  # noqa: E402
from reidlab.models.reid import ReIDModel  # noqa: E402
from reidlab.registry import BACKBONES  # noqa: E402

# The smallest forms of each family the registry's builders take: two blocks in layer1
# and layer2 (so that IBN-b's InstanceNorm after the residual sum is there), one in
# layer3 and layer4, 8 stem channels.
FAMILIES = {
    "plain": "resnet50",
    "se": "se_resnet50",
    "ibn_a": "ibn_a_resnet50",
    "ibn_b": "ibn_b_resnet50",
    "resnext": "resnext101_32x8d",
}
SMALL = {"layers": (2, 2, 1, 1), "base_width": 8, "last_stride": 1}


def small_model(name: str) -> ReIDModel:
    torch.manual_seed(0)
    backbone = BACKBONES.get(name)(**SMALL)
    model = ReIDModel(backbone, backbone.out_channels, 0)
    model.train()
    with torch.no_grad():  # move the BN statistics off 0 / 1 so that they matter
        for _ in range(2):
            model(torch.randn(4, 3, 64, 32) * 0.6 + 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def check_images(tiny_folder):
    return list_images(tiny_folder / "query").records[:4]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_matches_pytorch_for_each_family(family, check_images, tmp_path):
    cfg = load_config(None, ["data.height=64", "data.width=32", "test.flip=true"])
    model = small_model(FAMILIES[family])
    result = export_checked(cfg, model, tmp_path / "m.onnx", check_images)
    assert result.max_abs_diff <= 1e-4
    # Independently of the check: batch 1 and batch 4 give the rows of a plain forward
    # pass written here (uint8 in, ImageNet statistics, flip average, L2 normalisation).
    pixels = check_pixels(check_images, 64, 32)
    x = (pixels.float() / 255 - torch.tensor(cfg.augment.mean).view(1, 3, 1, 1)) / torch.tensor(
        cfg.augment.std).view(1, 3, 1, 1)
    with torch.no_grad():
        f = (model.embed(x, normalize=False) + model.embed(x.flip(3), normalize=False)) / 2
    expected = torch.nn.functional.normalize(f, dim=1).numpy()
    assert np.abs(run_onnx(result.path, pixels.numpy()) - expected).max() <= 1e-4
    assert np.abs(run_onnx(result.path, pixels[:1].numpy()) - expected[:1]).max() <= 1e-4


def test_float_input_and_half_precision(check_images, tmp_path):
    cfg = load_config(None, ["data.height=64", "data.width=32", "model.neck_feat=before"])
    model = small_model("ibn_a_resnet50")
    flt = export_checked(cfg, model, tmp_path / "f.onnx", check_images, input_type="float32")
    assert flt.max_abs_diff <= 1e-4
    pixels = check_pixels(check_images, 64, 32)
    out_u8 = export_checked(cfg, model, tmp_path / "u.onnx", check_images)
    same = run_onnx(flt.path, pixels.float().div(255).numpy())
    assert np.abs(same - run_onnx(out_u8.path, pixels.numpy())).max() <= 1e-5
    before = {k: v.clone() for k, v in model.state_dict().items()}
    half = export_checked(cfg, model, tmp_path / "h.onnx", check_images, fp16=True)
    assert half.tolerance == 1e-2 and half.max_abs_diff <= 1e-2
    after = model.state_dict()  # the half export leaves the PyTorch model as it was
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())

def test_cli_export(tiny_folder, tiny_config, tiny_weights, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(tiny_config), f"model.weights={tiny_weights}", "--onnx", str(out),
                 "--images", str(tiny_folder / "query")]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "input images (uint8, RGB) of shape (B, 3, 64, 32)" in printed
    import onnx

    graph = onnx.load(str(out)).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 64, 32]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph.output[0].name == "features"


def test_cli_export_needs_weights(tiny_config, tmp_path, capsys):
    assert main(["export", str(tiny_config), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "model.weights" in capsys.readouterr().err
    assert not Path(tmp_path / "m.onnx").exists()

"""The inference model as ONNX, checked against PyTorch: ``reidlab export``.

The graph takes RGB images of the config's size, ``(B, 3, data.height, data.width)`` with
a dynamic batch B, as ``uint8`` in [0, 255] (default) or ``float32`` in [0, 1], and does
inside it what the test pipeline does after resizing: scale to [0, 1], subtract
``augment.mean`` and divide by ``augment.std``, embed (``model.neck_feat``), average with
the mirrored image (``test.flip``), L2-normalise (``test.feat_norm``). Its one output
``features`` is (B, D) float32: the test feature. Resizing is left to the caller (any
resampling; the check below resizes as the test pipeline does).

Written with PyTorch's TorchScript-based exporter (``dynamo=False``), which needs only the
``onnx`` package; the dynamo exporter would also need ``onnxscript``. On export the file
is run by onnxruntime on CPU over a batch of real images and must give PyTorch's features
within ``1e-4`` (``1e-2`` with ``--fp16``), max abs difference of L2-normalised features.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from reidlab.config import Config
from reidlab.data.loader import decode_image
from reidlab.data.records import ImageRecord
from reidlab.data.transforms import Resize, ToFloat, build_transforms
from reidlab.engine.evaluator import extract_features
from reidlab.models.reid import ReIDModel

log = logging.getLogger("reidlab")

InputType = Literal["uint8", "float32"]
TOLERANCE = {False: 1e-4, True: 1e-2}  # by fp16
OPSET = 17


class ExportCheckError(ValueError):
    """The exported graph does not give PyTorch's features."""


class InferenceGraph(nn.Module):
    """Images in, test features out; the module the ONNX file is traced from.

    Args:
        model: the trained model (eval mode).
        mean, std: per-channel statistics of the [0, 1] RGB image (``augment.mean/std``).
        flip: average with the horizontally mirrored image.
        normalize: L2-normalise the output.
        input_type: ``"uint8"`` ([0, 255]) or ``"float32"`` ([0, 1]).
        fp16: run the network in half precision (input and output stay as documented).

    Shape:
        (B, 3, H, W) -> (B, D) float32.
    """

    def __init__(self, model: ReIDModel, mean: tuple[float, ...], std: tuple[float, ...], *,
                 flip: bool, normalize: bool, input_type: InputType = "uint8",
                 fp16: bool = False) -> None:
        super().__init__()
        self.model = model.half() if fp16 else model
        self.flip, self.normalize, self.fp16 = flip, normalize, fp16
        self.scale = 1.0 / 255.0 if input_type == "uint8" else 1.0
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        x = (images.float() * self.scale - mean) / std  # (B, 3, H, W)
        if self.fp16:
            x = x.half()
        feats = self.model.embed(x, normalize=False)  # (B, D)
        if self.flip:
            feats = (feats + self.model.embed(x.flip(3), normalize=False)) / 2
        feats = feats.float()
        return F.normalize(feats, dim=1) if self.normalize else feats


def export_onnx(graph: InferenceGraph, out: str | Path, height: int, width: int,
                input_type: InputType = "uint8") -> Path:
    """Trace ``graph`` at (2, 3, height, width) and write ONNX (opset 17, dynamic batch)."""
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = torch.uint8 if input_type == "uint8" else torch.float32
    example = torch.zeros(2, 3, height, width, dtype=dtype)
    graph.eval()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    return path


def run_onnx(path: str | Path, images: np.ndarray) -> np.ndarray:
    """The ONNX file's output for ``images`` (B, 3, H, W), with onnxruntime on CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["features"], {"images": images})[0]


def check_pixels(records: list[ImageRecord], height: int, width: int) -> torch.Tensor:
    """(B, 3, height, width) uint8 images: decoded and resized as the test pipeline does,
    then rounded to 8 bits (what an application would pass the ONNX model)."""
    to_float, resize = ToFloat(), Resize(height, width)
    rows = [resize(to_float(decode_image(r.path))) for r in records]
    return torch.stack(rows).mul(255).round().clamp(0, 255).to(torch.uint8)


def reference_features(cfg: Config, model: ReIDModel, pixels: torch.Tensor) -> np.ndarray:
    """PyTorch's test features (B, D) of ``pixels`` through the engine's own
    :func:`extract_features` and test transform, L2-normalised."""
    d = cfg.data
    transform = build_transforms(cfg.augment, d.height, d.width, train=False)
    items = [(transform(img), -1, -1, i) for i, img in enumerate(pixels)]
    loader: DataLoader = DataLoader(items, batch_size=len(items))  # type: ignore[arg-type]
    f = extract_features(model, loader, torch.device("cpu"), flip=cfg.test.flip,
                         normalize=cfg.test.feat_norm, desc=None)
    return F.normalize(f.feats, dim=1).numpy()


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float
    images: int
    tolerance: float


def export_checked(cfg: Config, model: ReIDModel, out: str | Path, check: list[ImageRecord], *,
                   fp16: bool = False, input_type: InputType = "uint8") -> ExportResult:
    """Export ``model`` as ``cfg`` tests it and check the file on the ``check`` images.

    Raises:
        ExportCheckError: the features differ by more than the tolerance (the file is
            removed).
    """
    if not check:
        raise ValueError("export: no images to check the exported model on")
    model = model.cpu().eval()
    d = cfg.data
    pixels = check_pixels(check, d.height, d.width)
    expected = reference_features(cfg, model, pixels)
    reference_state = {k: v.clone() for k, v in model.state_dict().items()}
    graph = InferenceGraph(model, cfg.augment.mean, cfg.augment.std, flip=cfg.test.flip,
                           normalize=cfg.test.feat_norm, input_type=input_type, fp16=fp16)
    path = export_onnx(graph, out, d.height, d.width, input_type)
    model.float().load_state_dict(reference_state)  # .half() above was in place
    inputs = pixels.numpy() if input_type == "uint8" else pixels.float().div(255).numpy()
    got = F.normalize(torch.from_numpy(run_onnx(path, inputs)).float(), dim=1).numpy()
    diff = float(np.abs(got - expected).max())
    tolerance = TOLERANCE[fp16]
    if not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportCheckError(f"{path}: onnxruntime's features differ from PyTorch's by {diff:.3g}"
                               f" (max abs, over {len(check)} images), above {tolerance:g}; "
                               "the file was removed")
    log.info("exported %s: onnxruntime matches PyTorch within %.2g over %d images", path, diff,
             len(check))
    return ExportResult(path, diff, len(check), tolerance)


def export_from_config(cfg: Config, out: str | Path, *, images: str | Path | None = None,
                       fp16: bool = False, input_type: InputType = "uint8",
                       num_check: int = 16) -> ExportResult:
    """``reidlab export``: the model of ``cfg`` (``model.weights`` required) to ONNX, checked
    on the first ``num_check`` images of ``images`` (an image, folder or CSV), by default on
    the query images of the config's first test dataset."""
    from reidlab.data.pipeline import load_named
    from reidlab.inference.extract import list_images, load_inference_model

    model, _ = load_inference_model(cfg, torch.device("cpu"))
    if images is not None:
        records = list_images(images).records
    else:
        records = load_named(cfg.data, (cfg.data.test or cfg.data.train)[0]).query
    return export_checked(cfg, model, out, records[:num_check], fp16=fp16,
                          input_type=input_type)

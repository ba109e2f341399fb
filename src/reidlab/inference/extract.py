"""Test features of any images: ``reidlab extract``.

The images are read, transformed and embedded exactly as a test set is (the config's
size, normalisation, ``model.neck_feat``, ``test.flip`` and ``test.feat_norm``), through
the engine's :func:`~reidlab.engine.evaluator.extract_features`. The features are saved
as safetensors with the image paths, the pids and camids when the images carry them, and
the config and weights that made them (so that ``reidlab search`` can embed new queries
the same way without being given the config again).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from reidlab.config import Config, load_config, to_dict
from reidlab.data.check import DataCheckError
from reidlab.data.datasets.base import DatasetFormatError
from reidlab.data.datasets.custom import IMAGE_SUFFIXES, read_csv_split
from reidlab.data.image_check import check_images
from reidlab.data.loader import ImageDataset
from reidlab.data.records import ImageRecord
from reidlab.data.transforms import build_transforms
from reidlab.engine.context import resolve_device
from reidlab.engine.evaluator import extract_features
from reidlab.engine.task import load_model_weights
from reidlab.models.build import build_model
from reidlab.models.reid import ReIDModel

log = logging.getLogger("reidlab")

FORMAT = "reidlab-features/1"
UNKNOWN = -1  # pid / camid of an image whose labels are not known


@dataclass
class ImageSet:
    """Images to embed: records in order (pid and camid -1 when unknown)."""

    records: list[ImageRecord]
    labelled: bool  # every record has a known pid and camid


@dataclass
class FeatureFile:
    """What ``reidlab extract`` writes: features (N, D) float32, one path per row, pids and
    camids (N,) when known (else None), the config and weights that made them."""

    feats: torch.Tensor
    paths: list[str]
    pids: np.ndarray | None
    camids: np.ndarray | None
    config: Config
    weights: str


def _folder_labels(rel: Path) -> tuple[int, int] | None:
    """pid and camid of ``<pid>/<camid>_<anything>.ext`` (the ``folder`` dataset layout)."""
    if len(rel.parts) != 2 or not rel.parts[0].isdigit() or "_" not in rel.name:
        return None
    cam = rel.name.split("_", 1)[0]
    return (int(rel.parts[0]), int(cam)) if cam.isdigit() else None


def list_images(source: str | Path) -> ImageSet:
    """The images of ``source``: one image file, a CSV with the header ``path,pid[,camid]``
    (paths relative to its folder), or a folder searched recursively for .jpg, .jpeg and
    .png files in sorted path order. A folder in the ``folder`` dataset's split layout
    (``<pid>/<camid>_<anything>.jpg``, every image) gives pids and camids; other folders
    and single images have none.

    Raises:
        FileNotFoundError: ``source`` does not exist or holds no images.
        DatasetFormatError: a bad CSV line (naming the file and line).
    """
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        seen: dict[str, str] = {}
        records, duplicates, has_camid = read_csv_split(path.resolve(), "images", seen)
        if duplicates:
            raise DatasetFormatError("; ".join(str(p) for p in duplicates[:10]))
        if not has_camid:
            records = [ImageRecord(r.path, r.pid, UNKNOWN, r.domain) for r in records]
        if not records:
            raise FileNotFoundError(f"{path} lists no images")
        return ImageSet(records, has_camid)
    if path.is_file():
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            raise FileNotFoundError(f"{path} is not a .jpg, .jpeg, .png or .csv file")
        return ImageSet([ImageRecord(str(path.resolve()), UNKNOWN, UNKNOWN, "images")], False)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither an image, a CSV file nor a folder")
    found = sorted(
        Path(dirpath, name)
        for dirpath, dirs, names in os.walk(path.resolve())
        for name in names
        if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")
    )
    if not found:
        raise FileNotFoundError(f"{path} holds no .jpg, .jpeg or .png images")
    labels = [_folder_labels(p.relative_to(path.resolve())) for p in found]
    known = all(label is not None for label in labels)
    records = [
        ImageRecord(str(p), *(label if known and label else (UNKNOWN, UNKNOWN)), "images")
        for p, label in zip(found, labels, strict=True)
    ]
    return ImageSet(records, known)


def require_readable(records: list[ImageRecord]) -> None:
    """Open every image first (see :func:`~reidlab.data.image_check.check_images`).

    Raises:
        DataCheckError: naming the bad files (the first ten).
    """
    bad = check_images([r.path for r in records], desc="checking images")
    if bad:
        listed = "; ".join(f"{p}: {detail}" for p, (_, detail) in list(bad.items())[:10])
        raise DataCheckError(f"{len(bad)} of {len(records)} images cannot be used: {listed}")


def load_inference_model(cfg: Config, device: torch.device) -> tuple[ReIDModel, Path]:
    """The test model of ``cfg`` with the weights of ``model.weights`` (required), in eval
    mode on ``device``; returns it and the checkpoint file it was read from."""
    if not cfg.model.weights:
        raise ValueError("model.weights=RUN_DIR_OR_CHECKPOINT is needed to compute features")
    model = build_model(cfg.model, 0, arcface=False, loss=cfg.loss)
    source = load_model_weights(model, cfg.model.weights)
    return model.to(device).eval(), source


def embed_images(cfg: Config, model: ReIDModel, records: list[ImageRecord],
                 device: torch.device, progress: bool = True) -> torch.Tensor:
    """Test features (N, D) of ``records`` in order, as a test set's are computed."""
    d = cfg.data
    loader = DataLoader(ImageDataset(records, build_transforms(cfg.augment, d.height, d.width,
                                                               train=False)),
                        batch_size=d.test_batch_size, shuffle=False, num_workers=d.num_workers)
    amp = cfg.solver.amp and device.type == "cuda"
    features = extract_features(model, loader, device, flip=cfg.test.flip,
                                normalize=cfg.test.feat_norm, amp=amp,
                                desc="features" if progress else None)
    return features.feats


def extract(cfg: Config, source: str | Path, out: str | Path,
            progress: bool = True) -> FeatureFile:
    """Embed the images of ``source`` (see :func:`list_images`) and write ``out``.

    Returns:
        What was written (see :class:`FeatureFile`).
    """
    images = list_images(source)
    require_readable(images.records)
    device = resolve_device(cfg.device)
    model, weights = load_inference_model(cfg, device)
    feats = embed_images(cfg, model, images.records, device, progress)
    pids = np.array([r.pid for r in images.records]) if images.labelled else None
    camids = np.array([r.camid for r in images.records]) if images.labelled else None
    result = FeatureFile(feats, [r.path for r in images.records], pids, camids, cfg,
                         str(weights.resolve()))
    save_features(result, out)
    log.info("%d features of dimension %d written to %s", feats.shape[0], feats.shape[1], out)
    return result


def save_features(f: FeatureFile, out: str | Path) -> None:
    """Write ``f`` as safetensors: tensors ``features`` (and ``pids``, ``camids``), the
    paths, config and weights in the metadata."""
    tensors = {"features": f.feats.float().contiguous()}
    if f.pids is not None and f.camids is not None:
        tensors["pids"] = torch.as_tensor(f.pids, dtype=torch.int64)
        tensors["camids"] = torch.as_tensor(f.camids, dtype=torch.int64)
    meta = {"format": FORMAT, "paths": json.dumps(f.paths),
            "config": yaml.safe_dump(to_dict(f.config), sort_keys=False), "weights": f.weights}
    Path(out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)


def load_features(path: str | Path) -> FeatureFile:
    """Read a file written by :func:`save_features`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a reidlab feature file (naming it and what is missing).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"feature file {file} does not exist")
    try:
        with safe_open(str(file), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{file} is not a safetensors file: {err}") from None
    if meta.get("format") != FORMAT or "features" not in tensors:
        raise ValueError(f"{file} is not a reidlab feature file (written by reidlab extract)")
    paths = json.loads(meta["paths"])
    feats = tensors["features"]
    if feats.ndim != 2 or len(paths) != feats.shape[0]:
        raise ValueError(f"{file}: {len(paths)} paths for features of shape {tuple(feats.shape)}")
    cfg = load_config(None, None) if "config" not in meta else _config(meta["config"], file)
    pids = tensors["pids"].numpy() if "pids" in tensors else None
    camids = tensors["camids"].numpy() if "camids" in tensors else None
    return FeatureFile(feats, paths, pids, camids, cfg, meta.get("weights", ""))


def stored_config(f: FeatureFile, overrides: list[str] | None = None) -> Config:
    """The config a feature file was made with, its checkpoint as ``model.weights``, with
    ``key=value`` overrides applied on top."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stored.yaml"
        data = to_dict(f.config)
        data["model"]["weights"] = f.weights
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return load_config(path, overrides)


def _config(text: str, file: Path) -> Config:
    try:
        return Config.model_validate(yaml.safe_load(text) or {})
    except (ValidationError, yaml.YAMLError) as err:
        raise ValueError(f"{file}: its stored config does not load: {err}") from None

"""The one place that maps the config to model constructor arguments."""

from __future__ import annotations

from reidlab.config import LossConfig, ModelConfig
from reidlab.models.arcface import ArcFace
from reidlab.models.backbones import build_backbone
from reidlab.models.backbones.pretrained import TORCHVISION_LAYOUT
from reidlab.models.reid import ReIDModel, backbone_channels


def build_model(
    cfg: ModelConfig, num_classes: int, arcface: bool = False, loss: LossConfig | None = None
) -> ReIDModel:
    """A :class:`ReIDModel` for ``num_classes`` training identities (0: no classifier).

    ``arcface`` puts an ArcFace classifier (scale and margin from ``loss``) in place of the
    linear one, unless ``loss.arcface_head`` is ``extra`` (the objective then owns an extra
    head). ``cfg.pretrained`` (ImageNet weights, path or URL) is loaded into the backbone,
    partially when ``cfg.pretrained_partial``.
    """
    options: dict[str, object] = {"ibn_b_blocks": cfg.ibn_b_blocks}
    if cfg.width != 64:
        options["base_width"] = cfg.width
    if cfg.zero_init_residual:
        options["zero_init_residual"] = True
    if cfg.layout == "torchvision":
        options.update(TORCHVISION_LAYOUT)
    backbone = build_backbone(cfg.backbone, last_stride=cfg.last_stride, weights=cfg.pretrained,
                              partial=cfg.pretrained_partial, **options)
    dim = backbone_channels(backbone)
    classifier = None
    loss = loss or LossConfig()
    if arcface and num_classes > 0 and loss.arcface_head == "replace":
        classifier = ArcFace(dim, num_classes, scale=loss.arcface_scale, margin=loss.arcface_margin)
    return ReIDModel(
        backbone,
        dim,
        num_classes,
        pooling=cfg.pooling,
        gem_p=cfg.gem_p,
        neck=cfg.neck,
        neck_feat=cfg.neck_feat,
        classifier=classifier,
    )

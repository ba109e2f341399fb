"""The difficulty knobs of the synthetic pedestrian dataset.

Identity is carried by the combination of clothing attributes; everything below only adds
nuisance (camera, pose, crop, occlusion, image quality) or changes the split sizes. Raising
the nuisance makes raw pixels worse and learning slower; the defaults keep a raw-pixel
baseline under 20% mAP while a small CNN trained from scratch reaches well above 60%.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difficulty:
    """Nuisance and split parameters; every field is saved into ``synthetic.json``.

    Ranges are ``(low, high)`` and drawn uniformly per image unless noted.
    """

    # split sizes
    train_images_per_id: tuple[int, int] = (12, 20)
    test_images_per_id: tuple[int, int] = (15, 25)
    cameras_per_id: tuple[int, int] = (2, 6)  # each identity is seen by this many cameras
    query_cameras_per_id: tuple[int, int] = (2, 5)  # one query image per chosen camera
    junk_fraction: float = 0.04  # pid -1 images, as a fraction of the identity gallery
    distractor_fraction: float = 0.05  # pid 0 images (people outside the identity set)

    # camera
    cast_strength: float = 1.0  # scales each camera's colour cast away from neutral
    gain_jitter: float = 0.12  # relative per-image illumination change
    view_bias: float = 1.0  # 0: front/back/side equally likely; 1: each camera's own mix

    # person placement, pose and occlusion
    scale: tuple[float, float] = (0.74, 0.94)  # person height / image height
    shift: float = 0.09  # largest horizontal offset of the person, fraction of the width
    lean_deg: float = 5.0  # largest forward/sideways lean
    stride: float = 1.0  # scales how far legs and arms swing
    occlusion_prob: float = 0.25  # a box, pole or other person in front of the body
    passer_by_prob: float = 0.2  # another person behind, in the background

    # image quality
    blur_prob: float = 0.3
    blur_radius: tuple[float, float] = (0.4, 1.1)  # pixels of the output image
    lowres_prob: float = 0.15  # rendered at half resolution, then upsampled
    noise_sigma: tuple[float, float] = (0.0, 5.0)  # grey levels, added to the camera's own
    jpeg_quality: tuple[int, int] = (60, 95)

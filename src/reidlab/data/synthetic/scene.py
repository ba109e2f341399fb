"""One camera image of one person: background, pose, crop, occlusion, camera and JPEG.

Scenes are drawn at twice the output size (128 x 256) and downsampled, which anti-aliases
the polygon edges. Every random choice comes from the generator passed in, so an image is a
pure function of its seed.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidlab.data.synthetic.backgrounds import background
from reidlab.data.synthetic.difficulty import Difficulty
from reidlab.data.synthetic.domains import CameraStyle, DomainStyle
from reidlab.data.synthetic.figure import Pose, draw_person, shade
from reidlab.data.synthetic.identity import Identity, sample_identity

OUT_W, OUT_H = 64, 128
SCENE_W, SCENE_H = 2 * OUT_W, 2 * OUT_H
VIEWS = ("front", "back", "side")


def random_pose(rng: np.random.Generator, cam: CameraStyle, diff: Difficulty) -> Pose:
    """A viewpoint from the camera's usual mix (softened by ``view_bias``) and a walking pose."""
    weights = (1 - diff.view_bias) / 3 + diff.view_bias * np.asarray(cam.views, np.float64)
    view = VIEWS[int(rng.choice(3, p=weights / weights.sum()))]
    mirror = int(rng.choice((-1, 1))) if view == "side" else 1
    lean = math.tan(math.radians(rng.uniform(-diff.lean_deg, diff.lean_deg)))
    return Pose(
        view, mirror, float(rng.uniform(-1, 1)) * diff.stride, lean, float(rng.uniform(0.0, 0.03))
    )


def _passer_by(
    rng: np.random.Generator,
    img: Image.Image,
    style: DomainStyle,
    cam: CameraStyle,
    diff: Difficulty,
    height: float,
    feet: float,
) -> None:
    """Another, smaller person further away, drawn before the main one."""
    scale = rng.uniform(0.45, 0.8)
    draw_person(
        img,
        sample_identity(rng, style),
        random_pose(rng, cam, diff),
        rng.uniform(0, SCENE_W),
        feet - height * (1 - scale) * rng.uniform(0.3, 0.6),
        height * scale,
    )


def _occlude(
    rng: np.random.Generator,
    img: Image.Image,
    style: DomainStyle,
    cam: CameraStyle,
    diff: Difficulty,
    cx: float,
    height: float,
    feet: float,
) -> None:
    """A box, pole or fragment of another person in front of part of the body."""
    kind = int(rng.integers(3))
    d = ImageDraw.Draw(img)
    colour = (int(rng.integers(20, 230)), int(rng.integers(20, 230)), int(rng.integers(20, 230)))
    if kind == 0:
        # a junk image's person may stand below the frame: keep the box inside it
        top = min(feet - height * rng.uniform(0.2, 0.45), SCENE_H * 0.9)
        x0, x1 = sorted(rng.uniform(-0.3, 1.3, 2) * SCENE_W)
        if x1 - x0 < 0.4 * SCENE_W:
            x1 = x0 + 0.4 * SCENE_W
        d.rectangle((x0, top, x1, SCENE_H), fill=colour)
        d.rectangle((x0, top, x1, top + 4), fill=shade(colour, 1.3))
    elif kind == 1:
        x, w = cx + rng.uniform(-0.3, 0.3) * SCENE_W, rng.uniform(6, 18)
        d.rectangle((x - w / 2, 0, x + w / 2, SCENE_H), fill=colour)
    else:
        side = float(rng.choice((-1.0, 1.0)))
        draw_person(
            img,
            sample_identity(rng, style),
            random_pose(rng, cam, diff),
            cx + side * rng.uniform(0.35, 0.6) * SCENE_W,
            feet + rng.uniform(0, 0.08) * SCENE_H,
            height * rng.uniform(0.95, 1.15),
        )


def _camera(
    rng: np.random.Generator, img: Image.Image, cam: CameraStyle, diff: Difficulty
) -> Image.Image:
    """Downsample, then the camera's resolution, blur, illumination, colour cast and noise."""
    if rng.random() < diff.lowres_prob:
        img = img.resize((OUT_W // 2, OUT_H // 2), Image.Resampling.BILINEAR)
    img = img.resize((OUT_W, OUT_H), Image.Resampling.BILINEAR)
    if rng.random() < diff.blur_prob:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*diff.blur_radius))))
    x = np.asarray(img, dtype=np.float32)  # (H, W, 3)
    cast = 1.0 + (np.asarray(cam.cast, np.float32) - 1.0) * diff.cast_strength
    gain = cam.gain * (1.0 + rng.uniform(-diff.gain_jitter, diff.gain_jitter))
    x = x * (gain * cast * (1.0 + rng.normal(0, 0.03, 3))).astype(np.float32)
    mean = x.mean()
    x = (x - mean) * cam.contrast + mean
    x = x * (1 - cam.haze) + 128.0 * cam.haze
    sigma = cam.noise + rng.uniform(*diff.noise_sigma)
    x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
    return Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8))


def render(
    rng: np.random.Generator,
    person: Identity | None,
    style: DomainStyle,
    camid: int,
    diff: Difficulty,
    junk: bool = False,
) -> bytes:
    """A JPEG (``OUT_H`` x ``OUT_W``, RGB) of ``person`` seen by camera ``camid`` (0-based).

    ``junk`` renders a bad detection, as Market-1501's pid -1 images: a person cut by the
    frame or magnified so that only part of the body shows, or background alone.
    """
    cam = style.cameras[camid]
    img = background(rng, cam.background, cam.colours, (SCENE_W, SCENE_H))
    height = SCENE_H * rng.uniform(*diff.scale)
    cx = SCENE_W * (0.5 + rng.uniform(-diff.shift, diff.shift))
    feet = SCENE_H * 0.5 + height / 2 + rng.uniform(-0.03, 0.03) * SCENE_H
    if junk:
        mode = int(rng.integers(3))
        if mode == 0:
            height *= rng.uniform(1.6, 2.6)
            feet = SCENE_H * rng.uniform(0.9, 2.2)
        elif mode == 1:
            cx += float(rng.choice((-1, 1))) * SCENE_W * rng.uniform(0.45, 0.65)
        else:
            person = None
    if rng.random() < diff.passer_by_prob:
        _passer_by(rng, img, style, cam, diff, height, feet)
    if person is not None:
        draw_person(img, person, random_pose(rng, cam, diff), cx, feet, height)
    if rng.random() < diff.occlusion_prob:
        _occlude(rng, img, style, cam, diff, cx, height, feet)
    out = _camera(rng, img, cam, diff)
    buf = io.BytesIO()
    out.save(
        buf,
        format="JPEG",
        quality=int(rng.integers(diff.jpeg_quality[0], diff.jpeg_quality[1] + 1)),
    )
    return buf.getvalue()

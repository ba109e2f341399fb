"""A procedural synthetic pedestrian dataset, written to disk in the Market-1501 layout.

Identities are combinations of clothing, body and accessory attributes drawn from small
shared palettes; images vary by camera, viewpoint, pose, crop, occlusion and image quality.
It is the default dataset wherever none is named, and needs no download.
"""

from reidlab.data.synthetic.baseline import raw_pixel_baseline
from reidlab.data.synthetic.difficulty import Difficulty
from reidlab.data.synthetic.generate import generate

__all__ = ["Difficulty", "generate", "raw_pixel_baseline"]

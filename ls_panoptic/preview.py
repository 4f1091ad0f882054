"""Preview images: a panoptic mask drawn over its image, so people can look instead of read.

Each instance gets a colour from a hue fixed by its class (instances of one class share the
hue, with a varied brightness), a white outline, and the background stays the photo itself.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["instance_colours", "render_preview"]

_GOLDEN = 0.618033988749895


def instance_colours(inst2class: Mapping[int, int], background_id: int) -> npt.NDArray[Any]:
    """``uint8`` ``(max_id + 1, 4)`` RGBA table: one colour per instance, background transparent."""
    size = max(inst2class, default=0) + 1
    table = np.zeros((size, 4), dtype=np.uint8)
    for rank, (instance, class_id) in enumerate(sorted(inst2class.items())):
        if class_id == background_id:
            continue
        hue = (class_id * _GOLDEN) % 1.0
        value = 0.65 + 0.35 * ((rank * _GOLDEN) % 1.0)
        r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
        table[instance] = (int(r * 255), int(g * 255), int(b * 255), 150)
    return table


def _outline(mask: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """bool ``(H, W)``: pixels whose right or lower neighbour belongs to another instance."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:-1, :] |= mask[:-1, :] != mask[1:, :]
    return edge


def render_preview(
    mask: npt.NDArray[Any],
    inst2class: Mapping[int, int],
    background_id: int,
    image: Image.Image | None = None,
) -> Image.Image:
    """Draw ``mask`` (``uint32`` ``(H, W)``) over ``image`` (grey canvas when ``None``).

    ``image`` must already be in the mask's frame (``ImageOps.exif_transpose`` for the default
    ``display`` orientation). Returns an RGB image of the mask's size.
    """
    height, width = mask.shape
    if image is None:
        base = Image.new("RGB", (width, height), (64, 64, 64))
    else:
        base = image.convert("RGB")
        if base.size != (width, height):
            base = base.resize((width, height))
    colours = instance_colours(inst2class, background_id)
    overlay = colours[np.minimum(mask, len(colours) - 1)]
    overlay[_outline(mask)] = (255, 255, 255, 255)
    return Image.alpha_composite(base.convert("RGBA"), Image.fromarray(overlay, "RGBA")).convert(
        "RGB"
    )

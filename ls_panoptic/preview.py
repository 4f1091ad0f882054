"""Preview images: a panoptic mask drawn over its image, so people can look instead of read.

Each instance gets a colour from a hue fixed by its class (instances of one class share the
hue, with a varied brightness), a white outline, and the background stays the photo itself.
Given the class names, a legend strip under the picture names each class present, in its hue,
with its number of segments.
"""

from __future__ import annotations

import colorsys
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

__all__ = ["instance_colours", "render_preview"]

_GOLDEN = 0.618033988749895


def instance_colours(inst2class: Mapping[int, int], background_id: int) -> npt.NDArray[Any]:
    """``uint8`` ``(max_id + 1, 4)`` RGBA table: one colour per instance, background transparent."""
    size = max(inst2class, default=0) + 1
    table = np.zeros((size, 4), dtype=np.uint8)
    for rank, (instance, class_id) in enumerate(sorted(inst2class.items())):
        if class_id == background_id:
            continue
        value = 0.65 + 0.35 * ((rank * _GOLDEN) % 1.0)
        table[instance] = (*_class_rgb(class_id, value), 150)
    return table


def _class_rgb(class_id: int, value: float = 0.85) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((class_id * _GOLDEN) % 1.0, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def _legend(
    width: int, inst2class: Mapping[int, int], background_id: int, id2label: Mapping[int, str]
) -> Image.Image:
    """A strip ``width`` wide: a swatch, the class name and its segment count per class shown,
    wrapped onto as many lines as it takes (background: the photo, so a grey swatch)."""
    counts = Counter(inst2class.values())
    size = max(12, min(64, width // 60))
    font = ImageFont.load_default(size=size)
    pad, line = size // 2, size + size // 2
    items = []
    for class_id in sorted(counts):
        name = id2label.get(class_id, f"class {class_id}")
        rgb = (128, 128, 128) if class_id == background_id else _class_rgb(class_id)
        text = f"{name} ({counts[class_id]})" if class_id != background_id else name
        items.append((rgb, text, size + pad + int(font.getlength(text)) + 2 * pad))
    placed, x, y = [], pad, pad  # one layout pass: where each item goes, wrapping
    for rgb, text, advance in items:
        if x + advance > width and x > pad:
            x, y = pad, y + line
        placed.append((x, y, rgb, text))
        x += advance
    strip = Image.new("RGB", (width, y + line), (24, 24, 24))  # lines x line + pad
    draw = ImageDraw.Draw(strip)
    for x, y, rgb, text in placed:
        draw.rectangle((x, y, x + size, y + size), fill=rgb, outline=(255, 255, 255))
        draw.text((x + size + pad, y), text, fill=(240, 240, 240), font=font)
    return strip


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
    id2label: Mapping[int, str] | None = None,
) -> Image.Image:
    """Draw ``mask`` (``uint32`` ``(H, W)``) over ``image`` (grey canvas when ``None``).

    ``image`` must already be in the mask's frame (``ImageOps.exif_transpose`` for the default
    ``display`` orientation). Returns an RGB image of the mask's size, or, given ``id2label``,
    that image above a legend strip of the classes shown.
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
    picture = Image.alpha_composite(base.convert("RGBA"), Image.fromarray(overlay, "RGBA"))
    if id2label is None:
        return picture.convert("RGB")
    legend = _legend(width, inst2class, background_id, id2label)
    framed = Image.new("RGB", (width, height + legend.height))
    framed.paste(picture.convert("RGB"), (0, 0))
    framed.paste(legend, (0, height))
    return framed

"""Which pixels a snapshot entry must give a region, for the field-data tests.

Only pixels whose centre (``[r, c]`` stands for the point ``(c + 0.5, r + 0.5)``) lies more than
``MARGIN`` pixels inside or outside a shape's outline are held to an answer, so these checks
hold whatever pixel convention draws the outline itself. Brush strokes are exact instead:
``alpha >= 128`` (the converter's default threshold) and nothing else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .field_results import Box, Point

__all__ = [
    "ID2LABEL",
    "assert_background_only",
    "assert_region",
    "box_zones",
    "convex_zones",
    "ellipse_zones",
    "stroke_zones",
]

Mask = NDArray[np.bool_]
Zones = tuple[Mask, Mask]
"""Pixels surely inside a shape, and surely outside it; bool ``(height, width)`` each."""
Shape = tuple[int, int]
"""``(height, width)``."""

#: the field project's class ids: its labels in config order, background appended
ID2LABEL = {0: "leaf", 1: "stem", 2: "tomato", 3: "background"}
MARGIN = 1.0
_THRESHOLD = 128


def _centres(shape: Shape) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    return xs + 0.5, ys + 0.5


def convex_zones(corners: list[Point], shape: Shape) -> Zones:
    """A convex polygon (corners in fractions, either winding)."""
    height, width = shape
    pts = [(x * width, y * height) for x, y in corners]
    edges = list(zip(pts, pts[1:] + pts[:1], strict=True))
    winding = np.sign(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in edges))
    x, y = _centres(shape)
    depth = np.full(shape, np.inf)  # distance inside the nearest edge (negative: outside)
    for (x1, y1), (x2, y2) in edges:
        across = ((x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)) / np.hypot(x2 - x1, y2 - y1)
        depth = np.minimum(depth, winding * across)
    return depth > MARGIN, depth < -MARGIN


def box_zones(box: Box, shape: Shape) -> Zones:
    """An unrotated rectangle ``(x, y, width, height)`` in fractions."""
    x, y, w, h = box
    return convex_zones([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], shape)


def ellipse_zones(oval: tuple[Point, Point, float], shape: Shape) -> Zones:
    """An ellipse ``(centre, radii, degrees)``, centre and radii in fractions, turned about
    its centre."""
    (cx, cy), (rx, ry), degrees = oval
    height, width = shape
    x, y = _centres(shape)
    t = np.radians(degrees)
    dx, dy = x - cx * width, y - cy * height
    u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
    rx_px, ry_px = rx * width, ry * height
    inside = (u / (rx_px - MARGIN)) ** 2 + (v / (ry_px - MARGIN)) ** 2 <= 1
    outside = (u / (rx_px + MARGIN)) ** 2 + (v / (ry_px + MARGIN)) ** 2 >= 1
    return inside, outside


def stroke_zones(alpha: NDArray[np.uint8]) -> Zones:
    """A brush stroke: exactly its pixels of alpha at or above the threshold."""
    covered = alpha >= _THRESHOLD
    return covered, ~covered


def assert_region(entry: dict[str, Any], label: str, zones: Zones) -> int:
    """One segment of class ``label`` covers the whole inside and nothing outside; its id."""
    inside, outside = zones
    mask = entry["panoptic_mask"]
    ids = np.unique(mask[inside])
    assert ids.size == 1, f"{label}: several segments {ids.tolist()} inside one region"
    segment = int(ids[0])
    assert ID2LABEL[entry["inst2class"][segment]] == label, f"segment {segment} is not {label}"
    assert not (mask[outside] == segment).any(), f"{label}: segment {segment} spills outside"
    return segment


def assert_background_only(entry: dict[str, Any], shape: Shape) -> None:
    """An all-background entry of ``shape``."""
    mask = entry["panoptic_mask"]
    assert mask.shape == shape and mask.dtype == np.uint32, (mask.shape, mask.dtype)
    assert entry["inst2class"] == {1: 3} and (mask == 1).all()

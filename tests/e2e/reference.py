"""An independent reference conversion of a Label Studio export, for the end-to-end tests.

Written plainly and on purpose differently from ``ls_panoptic`` (never imported here): every
shape is a per-pixel test on pixel centres, the pixel ``[r, c]`` standing for the point
``(c + 0.5, r + 0.5)`` in the continuous image plane Label Studio draws in.

- brush: ``label_studio_sdk``'s ``decode_rle``; the pixel counts where alpha >= 128.
- bitmask: PIL reads the PNG data URL; the pixel counts where alpha >= 128.
- polygon: even-odd crossing test of the pixel centre against the percent points scaled to pixels.
- rectangle: percent -> pixels per axis first, then the centre is turned back by ``rotation``
  degrees about the top-left corner ``(x, y)`` and tested against ``[0, w] x [0, h]``.
- ellipse: the centre is turned back about ``(x, y)``; inside where
  ``(u / radiusX)^2 + (v / radiusY)^2 <= 1``.

Regions are painted in ``result`` order (later on top). The annotation used is the latest
``updated_at`` among those not cancelled. Both JSON (list of tasks) and JSON_MIN (one record per
annotation, geometry grouped by control name, no region ids) are read.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import decode_rle
from numpy.typing import NDArray
from PIL import Image

__all__ = ["BACKGROUND", "ReferenceImage", "reference_conversion"]

Coords = NDArray[np.float64]
Mask = NDArray[np.bool_]

BACKGROUND = "background"
ALPHA_THRESHOLD = 128
#: the label key in ``value`` names the geometry kind, in JSON and JSON_MIN alike
KIND_BY_LABEL_KEY = {
    "brushlabels": "brush",
    "bitmasklabels": "bitmask",
    "polygonlabels": "polygon",
    "rectanglelabels": "rectangle",
    "ellipselabels": "ellipse",
}
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


@dataclass(frozen=True)
class ReferenceImage:
    """Reference result for one image.

    Attributes:
        task_id: Label Studio task id.
        classes: label name per pixel, ``BACKGROUND`` where no region shows; str ``(H, W)``.
        regions: index of the visible region per pixel (its position in painter order),
            -1 for background; int32 ``(H, W)``.
        labels: label of each region, by region index.
    """

    task_id: int
    classes: NDArray[np.str_]
    regions: NDArray[np.int32]
    labels: list[str]


def image_key(url: str) -> str:
    """``/data/upload/3/1a2b3c4d-leaf.png`` -> ``leaf.png``; other URLs -> basename."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return _UPLOAD_PREFIX.sub("", name) if url.startswith("/data/upload/") else name


def _centres(height: int, width: int) -> tuple[Coords, Coords]:
    """Pixel-centre coordinates ``(x, y)``, each float64 ``(height, width)``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return xs + 0.5, ys + 0.5


def _turn_back(x: Coords, y: Coords, ox: float, oy: float, degrees: float) -> tuple[Coords, Coords]:
    """Coordinates of ``(x, y)`` in a frame at ``(ox, oy)`` turned by ``degrees`` (y down)."""
    t = math.radians(degrees)
    dx, dy = x - ox, y - oy
    return dx * math.cos(t) + dy * math.sin(t), -dx * math.sin(t) + dy * math.cos(t)


def _alpha_png(data_url: str) -> NDArray[np.uint8]:
    payload = data_url.split(",", 1)[1]
    with Image.open(io.BytesIO(base64.b64decode(payload))) as png:
        return np.asarray(png.convert("RGBA"))[:, :, 3]


def _area(kind: str, value: dict[str, Any], height: int, width: int) -> Mask:
    """Boolean ``(height, width)``: the pixels one region covers."""
    if kind == "brush":
        decoded: NDArray[np.uint8] = np.asarray(decode_rle(value["rle"]), np.uint8)
        rgba = decoded.reshape(height, width, 4)
        return rgba[:, :, 3] >= ALPHA_THRESHOLD
    if kind == "bitmask":
        alpha = _alpha_png(value["imageDataURL"])
        if alpha.shape != (height, width):
            raise ValueError(f"bitmask is {alpha.shape}, image is {(height, width)}")
        return alpha >= ALPHA_THRESHOLD
    x, y = _centres(height, width)
    sx, sy = width / 100.0, height / 100.0
    if kind == "polygon":
        return _inside_polygon(x, y, [(px * sx, py * sy) for px, py in value["points"]])
    rotation = float(value.get("rotation") or 0.0)
    ox, oy = value["x"] * sx, value["y"] * sy
    u, v = _turn_back(x, y, ox, oy, rotation)
    if kind == "rectangle":
        w, h = value["width"] * sx, value["height"] * sy
        box: Mask = (u >= 0) & (u <= w) & (v >= 0) & (v <= h)
        return box
    rx, ry = value["radiusX"] * sx, value["radiusY"] * sy
    inside: Mask = (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    return inside


def _inside_polygon(x: Coords, y: Coords, points: list[tuple[float, float]]) -> Mask:
    inside = np.zeros(x.shape, bool)
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        if y1 == y2:
            continue
        straddles = (y1 > y) != (y2 > y)
        crossing_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= straddles & (x < crossing_x)
    return inside


def _paint(
    task_id: int, regions: list[tuple[str, str, dict[str, Any]]], height: int, width: int
) -> ReferenceImage:
    classes = np.full((height, width), BACKGROUND, dtype=object)
    index = np.full((height, width), -1, np.int32)
    labels = []
    for i, (kind, label, value) in enumerate(regions):
        covered = _area(kind, value, height, width)
        classes[covered] = label
        index[covered] = i
        labels.append(label)
    return ReferenceImage(task_id, classes.astype(str), index, labels)


def _region_of(value: dict[str, Any]) -> tuple[str, str] | None:
    for key, kind in KIND_BY_LABEL_KEY.items():
        if value.get(key):
            return kind, value[key][0]
    return None


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _from_json_task(task: dict[str, Any]) -> tuple[str, ReferenceImage] | None:
    usable = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
    if not usable:
        return None
    latest = max(usable, key=lambda a: _timestamp(a["updated_at"]))
    regions, seen, size = [], set(), None
    for item in latest["result"]:
        found = _region_of(item.get("value", {}))
        if found is None or item["id"] in seen:
            continue
        seen.add(item["id"])
        size = (item["original_height"], item["original_width"])
        regions.append((*found, item["value"]))
    if size is None:
        return None
    return image_key(task["data"]["image"]), _paint(task["id"], regions, *size)


def _from_json_min_records(records: list[dict[str, Any]]) -> tuple[str, ReferenceImage] | None:
    dated = [r for r in records if r.get("updated_at")]
    if not dated:
        return None
    latest = max(dated, key=lambda r: _timestamp(r["updated_at"]))
    regions, size = [], None
    for values in latest.values():
        if not isinstance(values, list):
            continue
        for value in values:
            found = _region_of(value) if isinstance(value, dict) else None
            if found is not None:
                size = (value["original_height"], value["original_width"])
                regions.append((*found, value))
    if size is None:
        return None
    return image_key(latest["image"]), _paint(latest["id"], regions, *size)


def reference_conversion(export: list[dict[str, Any]]) -> dict[str, ReferenceImage]:
    """Image key -> reference result, for a parsed JSON or JSON_MIN export."""
    if all("annotations" in item for item in export):
        found = [_from_json_task(task) for task in export]
    else:
        by_task: dict[int, list[dict[str, Any]]] = {}
        for record in export:
            by_task.setdefault(record["id"], []).append(record)
        found = [_from_json_min_records(records) for records in by_task.values()]
    return dict(item for item in found if item is not None)

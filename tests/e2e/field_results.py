"""The tasks of the field-data project (:mod:`tests.e2e.field_project`): images and results.

=================== ===================================================================
task (image name)   what it holds
=================== ===================================================================
pred_annotated.png  two predictions (rectangles leaf, stem) and an annotation (polygon tomato)
pred_only.png       one prediction (polygon stem), no annotation
size_keypoint.png   polygon leaf + brush stem WITHOUT original_width/height; a keypoint
                    (tomato) carries them
size_region.png     the same two regions; a rectangle (tomato) carries them
size_image.png      the same two regions, and nothing else: only the image gives the size
tool_labels.png     <Rectangle>/<Ellipse>/<Polygon>/<Brush> + <Labels>: a tool item and a
                    ``labels`` item per region (same id, the labels value repeats the geometry)
keypoint_labels.png <KeyPoint> + <Labels> (leaf), <Rectangle> + <Labels> (stem)
oriented_box.png    ``rectanglelabels`` given as four corner ``points`` (tomato), an annotation
oriented_pred.png   the same kind of box (leaf) as the only prediction, no annotation
choices_only.png    a <Choices> result carrying original_width/height, nothing else
keypoint_only.png   a keypoint carrying original_width/height, nothing else
empty_result.png    an annotation whose result is ``[]``
=================== ===================================================================

Each image has its own size, so a mask drawn at the wrong size cannot pass. Regions of one task
never overlap and each result lists its items control by control: JSON_MIN groups values by
control name, so paint order across controls is lost there, and the JSON and JSON_MIN
conversions can then be held to be identical. Geometry is written in fractions of the image's
width and height (the constants below), percent in the results, as Label Studio stores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from label_studio_sdk.converter.brush import encode_rle
from numpy.typing import NDArray

from .scene import LABELS

__all__ = [
    "ANNOTATED_TRIANGLE",
    "BLOB",
    "FIELD_CONFIG",
    "KEYPOINT_AT",
    "KEYPOINT_BOX",
    "ORIENTED_BOX",
    "ORIENTED_PRED",
    "QUAD",
    "SIZE_BOX",
    "TOOL_BLOB",
    "TOOL_BOX",
    "TOOL_OVAL",
    "TOOL_TRIANGLE",
    "TRIANGLE",
    "Box",
    "FieldTask",
    "Point",
    "blob_alpha",
    "field_tasks",
]

Result = list[dict[str, Any]]
Point = tuple[float, float]
"""``(x, y)`` as fractions of the image's width and height."""
Box = tuple[float, float, float, float]
"""An unrotated rectangle ``(x, y, width, height)`` in fractions."""
Size = tuple[int, int]
"""``(width, height)`` in pixels, as Label Studio's ``original_width``/``original_height``."""

_LABELS = "".join(f'<Label value="{label}"/>' for label in LABELS)
FIELD_CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <Labels name="label" toName="image">{_LABELS}</Labels>
  <Rectangle name="box" toName="image"/>
  <Ellipse name="oval" toName="image"/>
  <Polygon name="outline" toName="image"/>
  <Brush name="paint" toName="image"/>
  <KeyPoint name="point" toName="image"/>
  <PolygonLabels name="polygon" toName="image">{_LABELS}</PolygonLabels>
  <BrushLabels name="brush" toName="image">{_LABELS}</BrushLabels>
  <RectangleLabels name="rect" toName="image">{_LABELS}</RectangleLabels>
  <KeyPointLabels name="keypoint" toName="image">{_LABELS}</KeyPointLabels>
  <Choices name="quality" toName="image"><Choice value="good"/><Choice value="blurry"/></Choices>
</View>
"""

#: the size tasks: polygon (leaf), brush disc (stem: centre, radius as a fraction of the
#: shorter side) and, in size_region.png, the rectangle (tomato) that carries the size
TRIANGLE: list[Point] = [(0.05, 0.10), (0.45, 0.10), (0.25, 0.70)]
BLOB: tuple[Point, float] = ((0.72, 0.5), 0.3)
SIZE_BOX: Box = (0.45, 0.86, 0.20, 0.12)
#: the predictions' tasks
ANNOTATED_TRIANGLE: list[Point] = [(0.5, 0.1), (0.9, 0.1), (0.7, 0.5)]
QUAD: list[Point] = [(0.20, 0.15), (0.85, 0.25), (0.75, 0.85), (0.15, 0.70)]
#: tool_labels.png: leaf box, stem ellipse (centre, radii, degrees), tomato polygon, leaf brush
TOOL_BOX: Box = (0.05, 0.05, 0.35, 0.35)
TOOL_OVAL: tuple[Point, Point, float] = ((0.72, 0.28), (0.18, 0.20), 30.0)
TOOL_TRIANGLE: list[Point] = [(0.08, 0.60), (0.40, 0.60), (0.24, 0.95)]
TOOL_BLOB: tuple[Point, float] = ((0.72, 0.75), 0.15)
#: keypoint_labels.png: the keypoint (leaf) and the box (stem)
KEYPOINT_AT: Point = (0.8, 0.8)
KEYPOINT_BOX: Box = (0.1, 0.1, 0.4, 0.4)


@dataclass(frozen=True)
class FieldTask:
    """One task to create: its image (display size ``width`` x ``height``) and results."""

    name: str
    width: int
    height: int
    annotation: Result | None
    predictions: list[Result] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``: the shape its mask must have."""
        return self.height, self.width


def oriented_box(size: Size, half: Point, degrees: float) -> list[Point]:
    """Corners (fractions) of a box centred in the image, of half sides ``half`` in PIXELS,
    turned by ``degrees``."""
    width, height = size
    t = math.radians(degrees)
    return [
        (
            0.5 + (sx * half[0] * math.cos(t) - sy * half[1] * math.sin(t)) / width,
            0.5 + (sx * half[0] * math.sin(t) + sy * half[1] * math.cos(t)) / height,
        )
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]


#: 120 x 50 px turned 30 degrees (tomato, annotation); 100 x 40 px turned -40 (leaf, prediction)
ORIENTED_BOX = oriented_box((200, 160), (60, 25), 30.0)
ORIENTED_PRED = oriented_box((160, 128), (50, 20), -40.0)


def blob_alpha(width: int, height: int, blob: tuple[Point, float]) -> NDArray[np.uint8]:
    """The alpha of a brush stroke: an anti-aliased disc, uint8 ``(height, width)``."""
    (cx, cy), radius = blob
    alpha = np.zeros((height, width), np.uint8)
    shift = 4  # cv2 fixed-point bits: sub-pixel centre and radius
    scale = 1 << shift
    at = (round(cx * width * scale), round(cy * height * scale))
    cv2.circle(alpha, at, round(radius * min(width, height) * scale), 255, -1, cv2.LINE_AA, shift)
    return alpha


def _rle(alpha: NDArray[np.uint8]) -> list[int]:
    """Label Studio RLE of an RGBA buffer with alpha copied to R, G and B (the editor's)."""
    rgba = np.repeat(alpha[:, :, None], 4, axis=2)
    return [int(v) for v in encode_rle(rgba.ravel())]  # type: ignore[no-untyped-call]


def _item(
    region_id: str, control: str, type_: str, value: dict[str, Any], size: Size | None
) -> dict[str, Any]:
    """A result item; ``size`` ``None``: no original_width/height (as API-made ones may be)."""
    item: dict[str, Any] = {"id": region_id, "from_name": control, "to_name": "image"}
    item.update(type=type_, value=value)
    if size is not None:
        item.update(original_width=size[0], original_height=size[1], image_rotation=0)
    return item


def _percent(corners: list[Point]) -> list[list[float]]:
    return [[x * 100, y * 100] for x, y in corners]


def _box(box: Box) -> dict[str, Any]:
    x, y, w, h = (100 * v for v in box)
    return {"x": x, "y": y, "width": w, "height": h, "rotation": 0}


def _polygon(region_id: str, corners: list[Point], label: str, size: Size | None) -> dict[str, Any]:
    value = {"points": _percent(corners), "closed": True, "polygonlabels": [label]}
    return _item(region_id, "polygon", "polygonlabels", value, size)


def _rect(region_id: str, box: Box, label: str, size: Size) -> dict[str, Any]:
    value = {**_box(box), "rectanglelabels": [label]}
    return _item(region_id, "rect", "rectanglelabels", value, size)


def _keypoint(region_id: str, at: Point, label: str, size: Size) -> dict[str, Any]:
    value = {"x": at[0] * 100, "y": at[1] * 100, "width": 0.8, "keypointlabels": [label]}
    return _item(region_id, "keypoint", "keypointlabels", value, size)


def _tool_labels(
    region_id: str, tool: str, type_: str, geometry: dict[str, Any], label: str, size: Size
) -> Result:
    """A region of a tool plus ``<Labels>``, as the editor saves it: two items, one id."""
    return [
        _item(region_id, tool, type_, geometry, size),
        _item(region_id, "label", "labels", {**geometry, "labels": [label]}, size),
    ]


def _predictions() -> list[FieldTask]:
    s1, s2 = (160, 120), (144, 108)
    annotation = [_polygon("annoPoly01", ANNOTATED_TRIANGLE, "tomato", s1)]
    predicted = [
        [_rect("predRect01", (0.05, 0.05, 0.3, 0.3), "leaf", s1)],
        [_rect("predRect02", (0.6, 0.6, 0.3, 0.3), "stem", s1)],
    ]
    return [
        FieldTask("pred_annotated.png", *s1, annotation, predicted),
        FieldTask("pred_only.png", *s2, None, [[_polygon("predPoly01", QUAD, "stem", s2)]]),
    ]


def _sized_by(name: str, size: Size, sibling: dict[str, Any] | None) -> FieldTask:
    """The polygon (leaf) and the brush stroke (stem) WITHOUT original_width/height, plus
    ``sibling``: another result of the annotation that carries them (or none)."""
    brush = {"format": "rle", "rle": _rle(blob_alpha(*size, BLOB)), "brushlabels": ["stem"]}
    result = [
        _polygon("noSizePoly", TRIANGLE, "leaf", None),
        _item("noSizeBrsh", "brush", "brushlabels", brush, None),
    ]
    return FieldTask(name, *size, result + ([sibling] if sibling else []))


def _sizes() -> list[FieldTask]:
    point = _keypoint("sizedPoint", (0.5, 0.9), "tomato", (200, 150))
    rect = _rect("sizedRect1", SIZE_BOX, "tomato", (180, 135))
    return [
        _sized_by("size_keypoint.png", (200, 150), point),
        _sized_by("size_region.png", (180, 135), rect),
        _sized_by("size_image.png", (176, 132), None),
    ]


def _tools_with_labels() -> FieldTask:
    """tool_labels.png: a region of each tool, labelled through the separate <Labels>."""
    size = (192, 144)
    (cx, cy), (rx, ry), degrees = TOOL_OVAL
    oval = {"x": cx * 100, "y": cy * 100, "radiusX": rx * 100, "radiusY": ry * 100}
    outline = {"points": _percent(TOOL_TRIANGLE), "closed": True}
    paint = {"format": "rle", "rle": _rle(blob_alpha(*size, TOOL_BLOB))}
    result = [
        *_tool_labels("toolRect01", "box", "rectangle", _box(TOOL_BOX), "leaf", size),
        *_tool_labels("toolOval01", "oval", "ellipse", {**oval, "rotation": degrees}, "stem", size),
        *_tool_labels("toolPoly01", "outline", "polygon", outline, "tomato", size),
        *_tool_labels("toolBrush1", "paint", "brush", paint, "leaf", size),
    ]
    return FieldTask("tool_labels.png", *size, result)


def _keypoint_with_labels() -> FieldTask:
    """keypoint_labels.png: <KeyPoint> + <Labels> (paints nothing) and a labelled box."""
    size = (168, 126)
    point = {"x": KEYPOINT_AT[0] * 100, "y": KEYPOINT_AT[1] * 100, "width": 0.8}
    result = [
        *_tool_labels("labelPoint", "point", "keypoint", point, "leaf", size),
        *_tool_labels("labelRect1", "box", "rectangle", _box(KEYPOINT_BOX), "stem", size),
    ]
    return FieldTask("keypoint_labels.png", *size, result)


def _oriented(region_id: str, corners: list[Point], label: str, size: Size) -> Result:
    """An oriented box: a ``rectanglelabels`` item with four corner points, no x/y/width."""
    value = {"points": _percent(corners), "closed": True, "rectanglelabels": [label]}
    return [_item(region_id, "rect", "rectanglelabels", value, size)]


def _no_area() -> list[FieldTask]:
    choice = _item("choiceOnly", "quality", "choices", {"choices": ["good"]}, (120, 90))
    point = _keypoint("pointOnly1", (0.4, 0.6), "leaf", (112, 84))
    return [
        FieldTask("choices_only.png", 120, 90, [choice]),
        FieldTask("keypoint_only.png", 112, 84, [point]),
        FieldTask("empty_result.png", 104, 78, []),
    ]


def field_tasks() -> list[FieldTask]:
    """Every task of the project (see the module docstring), deterministic."""
    box = _oriented("obbAnnot01", ORIENTED_BOX, "tomato", (200, 160))
    predicted = _oriented("obbPredic1", ORIENTED_PRED, "leaf", (160, 128))
    return [
        *_predictions(),
        *_sizes(),
        _tools_with_labels(),
        _keypoint_with_labels(),
        FieldTask("oriented_box.png", 200, 160, box),
        FieldTask("oriented_pred.png", 160, 128, None, [predicted]),
        *_no_area(),
    ]

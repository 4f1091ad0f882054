"""Generated images and annotation results shaped exactly as the Label Studio editor saves them.

Result items (one per region; the editor's ``*Labels`` controls carry geometry and label together)::

    {"id": "<10 chars>", "from_name": "<control>", "to_name": "image", "type": "<control type>",
     "origin": "manual", "original_width": W, "original_height": H, "image_rotation": 0,
     "value": {...geometry in percent of W / H..., "<control type>": ["<label>"]}}

- brushlabels: ``{"format": "rle", "rle": [...]}``: Label Studio RLE of an RGBA buffer with the
  anti-aliased alpha copied into R, G and B (``label_studio_sdk.converter.brush.encode_rle``).
- bitmasklabels: ``{"imageDataURL": "data:image/png;base64,..."}``: an RGBA PNG of the image's
  display size, black pixels with the anti-aliased coverage in alpha (the editor's canvas).
- polygonlabels ``{"points": [[x, y], ...], "closed": true}``; rectanglelabels ``{x, y, width,
  height, rotation}`` (rotation about the top-left corner); ellipselabels ``{x, y, radiusX,
  radiusY, rotation}`` (about the centre); keypointlabels and choices are not areas.

``W`` and ``H`` are the DISPLAY size: for a JPEG with EXIF orientation 6 that is the stored size
turned by 90 degrees, because the browser shows (and the editor measures) the rotated image.
Geometry below is written as fractions of width and height so one layout fits every image.
"""

from __future__ import annotations

import base64
import io
import random
import string
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from label_studio_sdk.converter.brush import encode_rle
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "EXIF_JPEG",
    "LABELS",
    "PLAIN_JPEG",
    "PNG",
    "SKIPPED_ONLY",
    "UNLABELED",
    "ResultBuilder",
    "SceneImage",
    "make_images",
    "plant_result",
]

Alpha = NDArray[np.uint8]
"""Coverage 0..255, ``(height, width)``."""

LABELS = ("leaf", "stem", "tomato")
PNG = "tomato_plant.png"
EXIF_JPEG = "greenhouse_exif.jpg"
PLAIN_JPEG = "seedling.jpg"
SKIPPED_ONLY = "skipped_only.png"
UNLABELED = "unlabeled.png"
EXIF_ORIENTATION_TAG = 0x0112
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
#: cv2 fixed-point bits for sub-pixel drawing
_SHIFT = 4

Result = list[dict[str, Any]]


@dataclass(frozen=True)
class SceneImage:
    """One image file as uploaded, with its display size (``width`` x ``height``)."""

    name: str
    data: bytes
    width: int
    height: int


def _pixels(height: int, width: int, seed: int) -> NDArray[np.uint8]:
    """A smooth RGB picture with some noise, uint8 ``(height, width, 3)``."""
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    base = np.stack([rows * 200 + cols * 30, 90 + cols * 120, 60 + rows * cols * 150], axis=-1)
    noise = rng.normal(0, 6, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _encode(pixels: NDArray[np.uint8], fmt: str, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, "RGB")
    if orientation is None:
        image.save(buffer, fmt)
    else:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION_TAG] = orientation
        image.save(buffer, fmt, exif=exif, quality=90)
    return buffer.getvalue()


def make_images() -> list[SceneImage]:
    """The five test images; the EXIF one is stored 640x480 and displayed 480x640."""
    return [
        SceneImage(PNG, _encode(_pixels(480, 640, 1), "PNG"), 640, 480),
        SceneImage(EXIF_JPEG, _encode(_pixels(480, 640, 2), "JPEG", orientation=6), 480, 640),
        SceneImage(PLAIN_JPEG, _encode(_pixels(384, 512, 3), "JPEG"), 512, 384),
        SceneImage(SKIPPED_ONLY, _encode(_pixels(120, 160, 4), "PNG"), 160, 120),
        SceneImage(UNLABELED, _encode(_pixels(120, 160, 5), "PNG"), 160, 120),
    ]


class ResultBuilder:
    """Builds result items for one image of display size ``width`` x ``height``."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.width = width
        self.height = height
        self._rng = random.Random(seed)

    def region_id(self) -> str:
        return "".join(self._rng.choice(_ID_ALPHABET) for _ in range(10))

    def _item(self, from_name: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.region_id(),
            "from_name": from_name,
            "to_name": "image",
            "type": kind,
            "origin": "manual",
            "original_width": self.width,
            "original_height": self.height,
            "image_rotation": 0,
            "value": value,
        }

    def _px(self, fx: float, fy: float) -> tuple[int, int]:
        """Fractions -> cv2 fixed-point pixel coordinates."""
        return round(fx * self.width * (1 << _SHIFT)), round(fy * self.height * (1 << _SHIFT))

    def stroke_alpha(self, path: list[tuple[float, float]], thickness: float) -> Alpha:
        """Anti-aliased brush stroke along ``path`` (fractions), uint8 ``(height, width)``."""
        alpha = np.zeros((self.height, self.width), np.uint8)
        points = np.array([self._px(fx, fy) for fx, fy in path], np.int32)
        size = max(1, round(thickness * min(self.width, self.height)))
        cv2.polylines(alpha, [points], False, 255, size, cv2.LINE_AA, _SHIFT)
        return alpha

    def blob_alpha(
        self, centre: tuple[float, float], radius: float, tail: tuple[float, float]
    ) -> Alpha:
        """Anti-aliased disc (``radius`` a fraction of the shorter side) with a triangular tail
        reaching to ``tail``, uint8 ``(height, width)``."""
        alpha = np.zeros((self.height, self.width), np.uint8)
        r_px = radius * min(self.width, self.height)
        cx, cy = centre[0] * self.width, centre[1] * self.height
        triangle = [
            (cx, cy - 0.8 * r_px),
            (tail[0] * self.width, tail[1] * self.height),
            (cx, cy + 0.8 * r_px),
        ]
        scale = 1 << _SHIFT
        cv2.circle(alpha, self._px(*centre), round(r_px * scale), 255, -1, cv2.LINE_AA, _SHIFT)
        points = np.round(np.array(triangle) * scale).astype(np.int32)
        cv2.fillPoly(alpha, [points], 255, cv2.LINE_AA, _SHIFT)
        return alpha

    def brush(self, label: str, alpha: Alpha) -> dict[str, Any]:
        rgba = np.repeat(alpha[:, :, None], 4, axis=2)
        rle = [int(v) for v in encode_rle(rgba.ravel())]  # type: ignore[no-untyped-call]
        value = {"format": "rle", "rle": rle, "brushlabels": [label]}
        return self._item("brush", "brushlabels", value)

    def bitmask(self, label: str, alpha: Alpha) -> dict[str, Any]:
        rgba = np.zeros((self.height, self.width, 4), np.uint8)
        rgba[:, :, 3] = alpha
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        value = {"imageDataURL": url, "bitmasklabels": [label]}
        return self._item("bitmask", "bitmasklabels", value)

    def polygon(self, label: str, points: list[tuple[float, float]]) -> dict[str, Any]:
        value = {"points": [[fx * 100, fy * 100] for fx, fy in points], "closed": True}
        return self._item("polygon", "polygonlabels", {**value, "polygonlabels": [label]})

    def rectangle(
        self, label: str, box: tuple[float, float, float, float], rotation: float
    ) -> dict[str, Any]:
        fx, fy, fw, fh = box
        value = {"x": fx * 100, "y": fy * 100, "width": fw * 100, "height": fh * 100}
        return self._item(
            "rect", "rectanglelabels", {**value, "rotation": rotation, "rectanglelabels": [label]}
        )

    def ellipse(
        self, label: str, centre: tuple[float, float], radii: tuple[float, float], rotation: float
    ) -> dict[str, Any]:
        value = {
            "x": centre[0] * 100,
            "y": centre[1] * 100,
            "radiusX": radii[0] * 100,
            "radiusY": radii[1] * 100,
        }
        return self._item(
            "ellipse", "ellipselabels", {**value, "rotation": rotation, "ellipselabels": [label]}
        )

    def keypoint(self, label: str, point: tuple[float, float]) -> dict[str, Any]:
        value = {"x": point[0] * 100, "y": point[1] * 100, "width": 0.6, "keypointlabels": [label]}
        return self._item("keypoint", "keypointlabels", value)

    def choices(self, choice: str) -> dict[str, Any]:
        return {
            "id": self.region_id(),
            "from_name": "quality",
            "to_name": "image",
            "type": "choices",
            "origin": "manual",
            "value": {"choices": [choice]},
        }


def plant_result(builder: ResultBuilder, variant: int) -> Result:
    """One annotation's result: every area kind, overlapping, partly outside the frame, one
    region wholly hidden under a later one, plus a keypoint and a choice (no area).

    ``variant`` shifts the layout and rotates the labels so that two variants differ clearly.
    """
    dx, dy = 0.04 * variant, 0.03 * variant

    def at(fx: float, fy: float) -> tuple[float, float]:
        return fx + dx, fy + dy

    def label(i: int) -> str:
        return LABELS[(i + variant) % len(LABELS)]

    b = builder
    stroke = b.stroke_alpha([at(0.10, 0.20), at(0.35, 0.45), at(0.25, 0.70)], 0.07)
    thin = b.stroke_alpha([at(0.50, 0.12), at(0.56, 0.50), at(0.62, 0.92)], 0.025)
    blob = b.blob_alpha(at(0.22, 0.78), 0.11, at(0.45, 0.86))
    hexagon = [
        at(0.30, 0.30),
        at(0.55, 0.28),
        at(0.48, 0.45),
        at(0.60, 0.62),
        at(0.35, 0.66),
        at(0.28, 0.50),
    ]
    return [
        b.brush(label(0), stroke),
        b.polygon(label(1), hexagon),
        b.rectangle(label(2), (*at(0.55, 0.10), 0.30, 0.22), 25.0),
        b.ellipse(label(0), at(0.68, 0.62), (0.16, 0.10), 35.0),
        b.rectangle(label(0), (*at(0.20, 0.76), 0.04, 0.04), 0.0),  # hidden under the bitmask
        b.bitmask(label(2), blob),
        b.brush(label(1), thin),
        b.rectangle(label(1), (0.04 + dx, 0.01, 0.14, 0.10), -15.0),  # leaves through the top
        b.ellipse(label(2), (0.97, 0.45 + dy), (0.10, 0.08), 60.0),  # leaves through the right
        b.keypoint(label(0), at(0.5, 0.5)),
        b.choices("good"),
    ]

"""Synthetic Label Studio projects: images plus an export exactly shaped like Label Studio's.

Used by ``ls-panoptic demo`` and ``up --demo``, the tests' fixtures and ``bench/``. Every
region kind appears: anti-aliased brush strokes (encoded with label-studio-sdk's encoder,
byte-identical to the editor's), a bitmask PNG data URL, polygons, rotated rectangles and
ellipses, overlapping, plus one JPEG stored sideways with EXIF orientation 6 and annotated in
its displayed frame. Seeded: same seed, same bytes.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from label_studio_sdk.converter.brush import encode_rle
from PIL import Image

__all__ = ["LABELS", "SyntheticProject", "brush_rle", "label_config", "make_project"]

LABELS = ("leaf", "stem", "tomato")
_EXIF_ORIENTATION = 0x0112


def label_config(labels: tuple[str, ...] = LABELS) -> str:
    """A labeling config with one control per region kind, all on ``$image``."""
    label_tags = "".join(f'<Label value="{name}"/>' for name in labels)
    controls = "".join(
        f'<{tag} name="{name}" toName="image">{label_tags}</{tag}>'
        for tag, name in (
            ("BrushLabels", "brush"),
            ("BitmaskLabels", "bitmask"),
            ("PolygonLabels", "polygon"),
            ("RectangleLabels", "rect"),
            ("EllipseLabels", "ellipse"),
        )
    )
    return f'<View><Image name="image" value="$image"/>{controls}</View>'


def brush_rle(alpha: npt.NDArray[Any]) -> list[int]:
    """uint8 alpha (H, W) -> Label Studio brush RLE (alpha copied into RGB, as the editor does)."""
    rgba = np.repeat(alpha[:, :, None], 4, axis=2)
    return [int(b) for b in encode_rle(rgba.reshape(-1))]  # type: ignore[no-untyped-call]


def _blob(rng: np.random.Generator, height: int, width: int, scale: float) -> npt.NDArray[Any]:
    """An anti-aliased filled blob: uint8 alpha (H, W), 0 outside, 255 inside, soft edge."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
    n = int(rng.integers(6, 12))
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = rng.uniform(0.3, 1.0, n) * scale * min(height, width)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(alpha, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return alpha


def _item(
    kind: str, label: str, region_id: str, value: dict[str, Any], height: int, width: int
) -> dict[str, Any]:
    return {
        "id": region_id,
        "type": f"{kind}labels",
        "from_name": kind if kind != "rectangle" else "rect",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**value, f"{kind}labels": [label]},
    }


def _random_regions(
    rng: np.random.Generator, height: int, width: int, n_brush: int, n_poly: int, prefix: str
) -> list[dict[str, Any]]:

    def pick() -> str:
        return LABELS[int(rng.integers(len(LABELS)))]

    items = []
    for i in range(n_brush):
        rle = brush_rle(_blob(rng, height, width, 0.12))
        items.append(
            _item("brush", pick(), f"{prefix}b{i}", {"format": "rle", "rle": rle}, height, width)
        )
    for i in range(n_poly):
        cx, cy = rng.uniform(10, 90, 2)
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = [
            [
                float(np.clip(cx + 12 * math.cos(a), 0, 100)),
                float(np.clip(cy + 12 * math.sin(a), 0, 100)),
            ]
            for a in ang
        ]
        items.append(
            _item(
                "polygon", pick(), f"{prefix}p{i}", {"points": pts, "closed": True}, height, width
            )
        )
    return items


def _bitmask(rng: np.random.Generator, height: int, width: int) -> dict[str, Any]:
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[:, :, 3] = _blob(rng, height, width, 0.15)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return {"imageDataURL": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


def _fixed_regions(rng: np.random.Generator, height: int, width: int) -> list[dict[str, Any]]:
    """One of each remaining kind: bitmask, rotated rectangle, rotated ellipse."""
    return [
        _item("bitmask", "leaf", "bm0", _bitmask(rng, height, width), height, width),
        _item(
            "rectangle",
            "stem",
            "r0",
            {"x": 20.0, "y": 15.0, "width": 8.0, "height": 40.0, "rotation": 25.0},
            height,
            width,
        ),
        _item(
            "ellipse",
            "tomato",
            "e0",
            {"x": 62.0, "y": 58.0, "radiusX": 11.0, "radiusY": 7.0, "rotation": 30.0},
            height,
            width,
        ),
    ]


def _image(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[Any]:
    """A plausible-looking RGB backdrop: a green gradient with noise, uint8 (H, W, 3)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 60 * xx / width, 110 + 80 * yy / height, 50 + 30 * xx / width], -1)
    noise = rng.normal(0, 12, (height, width, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticProject:
    """Where a generated project was written."""

    export: Path
    images: Path
    config: Path
    tasks: int


def _write_image(rgb: npt.NDArray[Any], path: Path, exif_rotated: bool) -> None:
    if not exif_rotated:
        Image.fromarray(rgb).save(path)
        return
    # Store the pixels rotated so that EXIF orientation 6 (rotate 90 CW) displays ``rgb``.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6
    stored.save(path, format="JPEG", quality=90, exif=exif)


def _annotations(n: int, result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Task ``n``'s annotations: an older one of two regions, a newer one with all of them
    (the one used), and on every third task from the second on a skipped one."""
    older = {
        "id": 1000 + 2 * n,
        "result": result[:2],
        "was_cancelled": False,
        "ground_truth": False,
        "completed_by": 1,
        "created_at": "2026-11-01T09:00:00.000000Z",
        "updated_at": "2026-11-01T09:00:00.000000Z",
    }
    newer = {
        **older,
        "id": 1001 + 2 * n,
        "result": result,
        "created_at": "2026-11-02T10:00:00.000000Z",
        "updated_at": "2026-11-02T10:30:00.000000Z",
    }
    if n % 3 != 1:
        return [older, newer]
    skipped = {**newer, "id": 5000 + n, "result": [], "was_cancelled": True,
               "updated_at": "2026-11-03T08:00:00.000000Z"}  # fmt: skip
    return [older, newer, skipped]


def make_project(
    folder: Path,
    *,
    n_images: int = 6,
    height: int = 480,
    width: int = 640,
    n_brush: int = 4,
    n_poly: int = 3,
    seed: int = 0,
    every_kind: bool = True,
) -> SyntheticProject:
    """Write images, ``export.json`` (Label Studio JSON export) and ``config.xml`` to ``folder``.

    Image 0 is a JPEG stored sideways with EXIF orientation 6: displayed ``(height, width)``.
    Every task has an older annotation, a newer one (the one used) and some a skipped one.
    ``every_kind`` adds a bitmask, a rotated rectangle and a rotated ellipse to each image.
    """
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    tasks = []
    for n in range(n_images):
        name = f"plant_{n:03d}.jpg" if n % 2 == 0 else f"plant_{n:03d}.png"
        _write_image(_image(rng, height, width), images / name, exif_rotated=n == 0)
        result = _random_regions(rng, height, width, n_brush, n_poly, f"t{n}")
        if every_kind:
            result += _fixed_regions(rng, height, width)
        image = f"/data/upload/1/{n:08x}-{name}"
        annotations = _annotations(n, result)
        tasks.append(
            {"id": n + 1, "data": {"image": image}, "annotations": annotations,
             "predictions": [], "drafts": []}
        )  # fmt: skip
    export = folder / "export.json"
    export.write_text(json.dumps(tasks))
    config = folder / "config.xml"
    config.write_text(label_config())
    return SyntheticProject(export=export, images=images, config=config, tasks=len(tasks))

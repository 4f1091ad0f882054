"""Label Studio region geometry -> the pixels it covers: one :class:`Shape` per region.

Geometry formats (Label Studio 1.23; ``W``, ``H`` = ``original_width``, ``original_height``)::

    polygon    points [[x%, y%], ...]      >= 3 vertices, closed implicitly, even-odd fill
    rectangle  x%, y% (top-left), width%, height%, rotation (degrees about the top-left corner);
               or points [[x%, y%] x 4] (oriented-box pre-annotations): drawn as that polygon
    ellipse    x%, y% (centre), radiusX% (of W), radiusY% (of H), rotation (degrees about centre)
    bitmask    imageDataURL  "data:image/png;base64,..."  RGBA PNG of W x H; mask = alpha >= t
    brush      format "rle", rle [int, ...]  Label Studio's bit-packed RGBA RLE (ls_panoptic.rle)

Percentages become pixels per axis first (``x * W / 100``, ``y * H / 100``); rotation happens in
pixel space, clockwise on screen. A pixel belongs to a polygon, rectangle or ellipse when its
centre ``(col + 0.5, row + 0.5)`` lies inside (top-left rule on the boundary): the full
convention is in :mod:`ls_panoptic._geometry`. Brush and bitmask pixels count when their
anti-aliased alpha is ``>= brush_threshold``.

Every shape is computed once, in :func:`shape_for`, as flat pixel runs (the form decoded brush
RLE already has): ``area()`` sums run lengths and ``paint()`` writes runs, so neither allocates an
image-sized buffer. Geometry clips to the image; coordinates beyond ``MAX_ABS_PERCENT`` are refused
as implausible rather than clipped, so float error can never reach the pixels.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from . import _geometry as geometry
from ._png_alpha import fast_alpha
from .errors import GeometryError
from .model import Region
from .rle import decode_runs, paint_runs, runs_area

__all__ = ["MAX_ABS_PERCENT", "PNG_DATA_URL_PREFIX", "Shape", "shape_for"]

MAX_ABS_PERCENT = 1e6
"""Largest coordinate, in percent, accepted (ten thousand image sizes away); beyond is an error."""

PNG_DATA_URL_PREFIX = "data:image/png;base64,"
_Checkpoint = geometry.Checkpoint | None  # polygons and boxes: long sweeps call it
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Shape(Protocol):
    """The pixels of one region, ready to measure and paint."""

    def area(self) -> int:
        """Pixels this region covers on its own."""
        ...

    def paint(self, canvas: npt.NDArray[np.integer[Any]], value: int) -> None:
        """Set the covered pixels of ``canvas`` (integer dtype wide enough for ``value``,
        ``(height, width)``, C-contiguous) to ``value``."""
        ...


@dataclass(frozen=True)
class _RunShape:
    """A shape as sorted ``int64`` flat runs ``[starts[i], stops[i])`` on ``(height, width)``."""

    starts: geometry.Ints
    stops: geometry.Ints
    height: int
    width: int

    def area(self) -> int:
        return int(runs_area(self.starts, self.stops))

    def paint(self, canvas: npt.NDArray[np.integer[Any]], value: int) -> None:
        expected = (self.height, self.width)
        if (
            canvas.shape != expected
            or canvas.dtype.kind not in "iu"
            or not canvas.flags.c_contiguous
            or not np.iinfo(canvas.dtype).min <= value <= np.iinfo(canvas.dtype).max
        ):
            raise ValueError(
                f"canvas must be a C-contiguous integer array of shape {expected} that holds "
                f"{value}, not {canvas.dtype} {canvas.shape}"
            )
        paint_runs(canvas.reshape(-1), self.starts, self.stops, value)


def shape_for(
    region: Region, *, brush_threshold: int = 128, checkpoint: geometry.Checkpoint | None = None
) -> Shape:
    """Rasterise ``region`` onto its ``(region.height, region.width)`` pixel grid.

    Args:
        region: an area region; ``value`` holds Label Studio's geometry fields.
        brush_threshold: alpha (1..255) at or above which a brush or bitmask pixel counts.
        checkpoint: called now and then while a long polygon (or box) is swept; whatever it
            raises propagates (the conversion's time limit uses it).

    Raises:
        GeometryError: the geometry is missing, malformed or implausible (message says which).
        RLEError: a brush RLE is corrupt (from :mod:`ls_panoptic.rle`).
    """
    if not 1 <= brush_threshold <= 255:
        raise ValueError(f"brush_threshold must be in 1..255, not {brush_threshold}")
    if region.height <= 0 or region.width <= 0:
        raise GeometryError(f"image size {region.width}x{region.height} is not positive")
    rasterise = _RASTERISERS.get(region.kind)
    if rasterise is None:
        raise GeometryError(f"region kind {region.kind!r} has no area")
    starts, stops = rasterise(region, brush_threshold, checkpoint)
    return _RunShape(starts, stops, region.height, region.width)


def _polygon(region: Region, _threshold: int, checkpoint: _Checkpoint) -> geometry.Runs:
    points = region.value.get("points")
    if not isinstance(points, (list, tuple)):
        raise GeometryError(_wrong_type("points", points, "a list of [x, y] pairs"))
    if len(points) < 3:
        raise GeometryError(f"needs at least 3 points, got {len(points)}")
    pixels = _percent_pairs(points) * np.array([region.width, region.height]) / 100.0
    return geometry.polygon_runs(pixels, region.height, region.width, checkpoint)


def _rectangle(region: Region, threshold: int, checkpoint: _Checkpoint) -> geometry.Runs:
    value, width, height = region.value, region.width, region.height
    if "points" in value and not {"x", "y", "width", "height"} & value.keys():
        return _polygon(region, threshold, checkpoint)  # an oriented box given by its corners
    left, top = _pixels(value, "x", width), _pixels(value, "y", height)
    size = _pixels(value, "width", width, size=True), _pixels(value, "height", height, size=True)
    corners = geometry.rectangle_corners(left, top, *size, _number(value, "rotation", 0.0))
    return geometry.polygon_runs(corners, height, width, checkpoint)


def _ellipse(region: Region, _threshold: int, _checkpoint: _Checkpoint) -> geometry.Runs:
    value, width, height = region.value, region.width, region.height
    centre = _pixels(value, "x", width), _pixels(value, "y", height)
    radii = (
        _pixels(value, "radiusX", width, size=True),
        _pixels(value, "radiusY", height, size=True),
    )
    degrees = _number(value, "rotation", 0.0)
    return geometry.ellipse_runs(centre, radii, degrees, height, width)


def _bitmask(region: Region, threshold: int, _checkpoint: _Checkpoint) -> geometry.Runs:
    alpha = _png_alpha(_data_url(region.value), region.height, region.width)
    return geometry.mask_runs(alpha >= threshold)


def _brush(region: Region, threshold: int, _checkpoint: _Checkpoint) -> geometry.Runs:
    kind = region.value.get("format", "rle")
    if kind != "rle":
        raise GeometryError(f"format {_show(kind)} is not supported; only 'rle' is")
    rle = region.value.get("rle")
    if not isinstance(rle, (list, tuple, np.ndarray)):  # exports read it as an int64 array
        raise GeometryError(_wrong_type("rle", rle, "a list of integers"))
    return decode_runs(rle, region.height, region.width, threshold)


_RASTERISERS: dict[str, Callable[[Region, int, _Checkpoint], geometry.Runs]] = {
    "polygon": _polygon,
    "rectangle": _rectangle,
    "ellipse": _ellipse,
    "bitmask": _bitmask,
    "brush": _brush,
}


def _data_url(value: Mapping[str, Any]) -> str:
    """The bitmask's PNG data URL: ``imageDataURL``, else any value that is one."""
    if "imageDataURL" in value:
        url = value["imageDataURL"]
        if isinstance(url, str) and url.startswith(PNG_DATA_URL_PREFIX):
            return url
        raise GeometryError(f"'imageDataURL' is {_show(url)}, not a {PNG_DATA_URL_PREFIX} URL")
    for url in value.values():
        if isinstance(url, str) and url.startswith(PNG_DATA_URL_PREFIX):
            return url
    raise GeometryError(f"no 'imageDataURL' (a {PNG_DATA_URL_PREFIX}... URL) in value")


def _png_alpha(url: str, height: int, width: int) -> npt.NDArray[np.uint8]:
    """Alpha channel of a PNG data URL: ``uint8`` ``(height, width)``, C-contiguous."""
    try:
        data = base64.b64decode(url[len(PNG_DATA_URL_PREFIX) :], validate=True)
    except ValueError as exc:  # binascii.Error, or text that is not even ASCII
        raise GeometryError(f"imageDataURL is not valid base64 ({exc})") from exc
    if not data.startswith(_PNG_SIGNATURE):
        raise GeometryError("imageDataURL does not hold a PNG (no PNG signature)")
    alpha = fast_alpha(data, height, width)  # the common 8-bit RGBA case, ~3x faster
    if alpha is not None:
        return alpha
    try:  # reads the header only: the size is checked before any pixel is decoded
        image = Image.open(io.BytesIO(data), formats=["PNG"])
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise GeometryError(f"PNG cannot be read ({exc})") from exc
    if image.size != (width, height):
        raise GeometryError(f"PNG is {image.width}x{image.height}, the image {width}x{height}")
    if "A" not in image.getbands() and "transparency" not in image.info:
        raise GeometryError(f"PNG (mode {image.mode}) has no alpha channel")
    try:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        return np.asarray(rgba.getchannel("A"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise GeometryError(f"PNG cannot be decoded ({exc})") from exc


def _percent_pairs(points: list[Any] | tuple[Any, ...]) -> geometry.Floats:
    """``float64`` ``(n, 2)`` percent coordinates, validated; fast path for clean numeric input."""
    try:
        pairs = np.asarray(points)
    except (ValueError, TypeError):  # ragged: the loop below names the bad point
        pairs = np.empty(0)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "iuf":
        pairs = np.array([_pair(point, index) for index, point in enumerate(points)])
    pairs = pairs.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(pairs).all(axis=1))
    if bad.size:
        raise GeometryError(f"point {bad[0]} is {_show(points[bad[0]])}, not finite numbers")
    far = np.flatnonzero((np.abs(pairs) > MAX_ABS_PERCENT).any(axis=1))
    if far.size:
        _check_percent(float(np.abs(pairs[far[0]]).max()), f"point {far[0]}")
    return pairs


def _pair(point: Any, index: int) -> tuple[float, float]:
    if not isinstance(point, (list, tuple)) or len(point) != 2:
        raise GeometryError(f"point {index} is {_show(point)}, not an [x, y] pair")
    return _real(point[0], f"point {index} x"), _real(point[1], f"point {index} y")


def _pixels(value: Mapping[str, Any], key: str, scale: int, *, size: bool = False) -> float:
    """Required ``value[key]``, percent of ``scale``, in pixels; ``size``: must not be negative."""
    number = _check_percent(_number(value, key), key)
    if size and number < 0:
        raise GeometryError(f"{key} is negative ({number:g}%)")
    return number * scale / 100.0


def _check_percent(number: float, what: str) -> float:
    if abs(number) > MAX_ABS_PERCENT:
        limit = f"±{MAX_ABS_PERCENT:g}%"
        raise GeometryError(f"{what} = {number:g}% is implausibly far off the image ({limit})")
    return number


def _number(value: Mapping[str, Any], key: str, default: float | None = None) -> float:
    """``value[key]`` as a finite float; ``default`` when absent (required when ``None``)."""
    if key not in value or value[key] is None:
        if default is None:
            raise GeometryError(f"{key!r} is missing")
        return default
    return _real(value[key], key)


def _real(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise GeometryError(f"{what} is {_show(raw)}, not a number")
    try:
        number = float(raw)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise GeometryError(f"{what} is {_show(raw)}, not a finite number")
    return number


def _wrong_type(key: str, raw: Any, wanted: str) -> str:
    return f"{key!r} is missing" if raw is None else f"{key!r} is {_show(raw)}, not {wanted}"


def _show(raw: Any) -> str:
    """A short ``repr`` for messages (a data URL can be megabytes)."""
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."

"""Exact centre-sampled rasterisation of polygons, rotated rectangles and ellipses into pixel runs.

Pixel convention (used by every shape in :mod:`ls_panoptic.rasterize`)::

    continuous coordinates in pixels: origin at the image's top-left corner, x right, y down
    pixel [row, col] = the unit square [col, col + 1) x [row, row + 1), centre (col + .5, row + .5)
    a pixel belongs to a shape  <=>  its centre lies inside the shape (even-odd rule)

Centres exactly on the boundary follow the top-left rule: each centre line ``y = row + 0.5``
meets the shape in half-open intervals ``[xa, xb)`` (an edge counts for ``y`` in
``[y_min, y_max)``), so a centre on a left or top boundary is in, on a right or bottom boundary
out. Two shapes sharing an edge therefore never both claim a pixel and leave no gap, and the box
``[x0, x1) x [y0, y1)`` covers columns ``ceil(x0 - .5) .. ceil(x1 - .5) - 1``: for whole-pixel
edges exactly columns ``x0 .. x1 - 1``.

Rotations are clockwise on screen (y points down): about a pivot, an offset ``(dx, dy)`` moves to
``(dx cos - dy sin, dx sin + dy cos)``. Multiples of 90 degrees use exact cosines and sines.

Shapes come out as *runs*: ``int64`` flat pixel indices ``[start, stop)`` into a C-contiguous
``(height, width)`` image, sorted and disjoint, the same form as decoded brush RLE. Work and memory
grow with the rows the shape spans inside the image, never with its size outside it. A polygon
with very many vertices is swept in bands of rows of at most about ``BAND_CROSSINGS`` (edge, row)
crossings, so beyond its vertices and its runs its working memory stays bounded.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "BAND_CROSSINGS",
    "Checkpoint",
    "Floats",
    "Ints",
    "Runs",
    "ellipse_runs",
    "mask_runs",
    "polygon_runs",
    "rectangle_corners",
    "rotation",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Runs = tuple[Ints, Ints]
"""``(starts, stops)``: ``int64`` arrays of equal length ``(n,)``, flat pixel indices."""

Checkpoint = Callable[[], None]
"""Called now and then during long work; it may raise to stop it."""

BAND_CROSSINGS = 1 << 17
"""(edge, row) crossings a polygon sweep handles at once, ~50 bytes each (about 6 MiB)."""

_QUARTER_TURNS = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))


def rotation(degrees: float) -> tuple[float, float]:
    """``(cos, sin)`` of ``degrees``, exact for multiples of 90 so boxes stay pixel-aligned."""
    quarters, rest = divmod(degrees, 90.0)
    if rest == 0.0:
        return _QUARTER_TURNS[int(quarters) % 4]
    radians = math.radians(degrees)
    return math.cos(radians), math.sin(radians)


def rectangle_corners(x: float, y: float, width: float, height: float, degrees: float) -> Floats:
    """Corners of a box with top-left ``(x, y)`` rotated by ``degrees`` about that corner.

    Returns:
        ``float64`` ``(4, 2)`` array of ``(x, y)`` pixel coordinates, in drawing order.
    """
    cos, sin = rotation(degrees)
    offsets = np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
    corners: Floats = offsets @ np.array([[cos, sin], [-sin, cos]]) + np.array([x, y])
    return corners


def polygon_runs(
    points: Floats, height: int, width: int, checkpoint: Checkpoint | None = None
) -> Runs:
    """Pixels whose centre lies inside the polygon (even-odd rule), clipped to the image.

    A polygon crossing more than ``BAND_CROSSINGS`` (edge, row) pairs is swept in bands of rows
    of about that many crossings each, so working memory stays bounded however many vertices it
    has; each crossing is computed by the same arithmetic either way, so the pixels are the same.

    Args:
        points: ``float64`` ``(n, 2)`` finite ``(x, y)`` vertices in pixels; the polygon closes
            itself (last vertex back to the first).
        height, width: image shape.
        checkpoint: called before each band of rows of a long sweep; it may raise to stop the
            work (the conversion's time limit does).
    """
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    slanted = y0 != y1  # horizontal edges cross no centre line under the half-open rule
    x0, y0, x1, y1 = x0[slanted], y0[slanted], x1[slanted], y1[slanted]
    # Edge i crosses centre rows [first, end). One monotone map from a vertex's y to a row bound
    # keeps the crossings of every row even, whatever the rounding.
    first = _row_bound(np.minimum(y0, y1), height)
    end = _row_bound(np.maximum(y0, y1), height)
    counts = end - first
    through = np.cumsum(counts)  # crossings of edges 0..i
    if not through.size or through[-1] <= BAND_CROSSINGS:
        return _sweep(x0, y0, x1, y1, first, counts, through, width)
    parts = []
    for lo, hi in _bands(first, end, height, BAND_CROSSINGS):
        if checkpoint is not None:
            checkpoint()
        band = (first < hi) & (end > lo)
        band_first = np.maximum(first[band], lo)
        counts = np.minimum(end[band], hi) - band_first
        edges = x0[band], y0[band], x1[band], y1[band]
        parts.append(_sweep(*edges, band_first, counts, np.cumsum(counts), width))
    return _join_runs(parts)


def _sweep(
    x0: Floats,
    y0: Floats,
    x1: Floats,
    y1: Floats,
    first: Ints,
    counts: Ints,
    through: Ints,
    width: int,
) -> Runs:
    """Runs on the centre rows that edges ``(x0, y0) -> (x1, y1)`` cross, edge ``i`` on rows
    ``first[i]`` to ``first[i] + counts[i] - 1`` (``through = cumsum(counts)``). Every edge
    crossing those rows must be given: their crossings pair up into spans."""
    edge = np.repeat(np.arange(counts.size), counts)
    rows = np.arange(edge.size) - np.repeat(through - counts, counts) + first[edge]
    slope = (x1 - x0) / (y1 - y0)
    xs = x0[edge] + (rows + 0.5 - y0[edge]) * slope[edge]
    xs = np.clip(xs, np.minimum(x0, x1)[edge], np.maximum(x0, x1)[edge])
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    return _spans_to_runs(rows[0::2], xs[0::2], xs[1::2], width)


def _bands(first: Ints, end: Ints, height: int, crossings: int) -> list[tuple[int, int]]:
    """Consecutive row bands ``[lo, hi)`` covering ``[0, height)`` that each hold at most about
    ``crossings`` edge crossings (more only when one row alone holds more)."""
    per_row = np.cumsum(
        np.bincount(first, minlength=height + 1) - np.bincount(end, minlength=height + 1)
    )[:height]
    through = np.cumsum(per_row)  # crossings on rows 0..r
    cuts = np.searchsorted(through, np.arange(crossings, int(through[-1]), crossings)) + 1
    bounds = np.unique(np.concatenate(([0], np.minimum(cuts, height), [height]))).tolist()
    return list(itertools.pairwise(bounds))


def _join_runs(parts: list[Runs]) -> Runs:
    """Concatenate runs of consecutive bands, joining a run that ends one band where the next
    band's first run starts (as :func:`_spans_to_runs` joins runs within a band)."""
    starts: list[Ints] = []
    stops: list[Ints] = []
    for part_starts, part_stops in parts:
        if stops and part_starts.size and stops[-1][-1] == part_starts[0]:
            stops[-1][-1] = part_stops[0]
            part_starts, part_stops = part_starts[1:], part_stops[1:]
        if part_starts.size:
            starts.append(part_starts)
            stops.append(part_stops)
    if not starts:
        return _no_runs()
    return np.concatenate(starts), np.concatenate(stops)


def ellipse_runs(
    centre: tuple[float, float], radii: tuple[float, float], degrees: float, height: int, width: int
) -> Runs:
    """Pixels whose centre lies inside a rotated ellipse, solved exactly row by row.

    Args:
        centre: ``(x, y)`` in pixels.
        radii: ``(rx, ry)`` in pixels, along the ellipse's own axes before rotation; ``>= 0``.
        degrees: rotation about the centre.
        height, width: image shape.
    """
    (cx, cy), (rx, ry) = centre, radii
    if rx <= 0.0 or ry <= 0.0:
        return _no_runs()
    cos, sin = rotation(degrees)
    reach = math.hypot(sin * rx, cos * ry)  # half the height of the bounding box
    bounds = _row_bound(np.array([cy - reach, cy + reach]), height)
    rows = np.arange(bounds[0], bounds[1], dtype=np.int64)
    dy = rows + 0.5 - cy
    # Offsets dx on the centre line satisfy a dx^2 + b dx + c <= 0 (the ellipse equation
    # rotated back and multiplied by rx^2 ry^2).
    a = (cos * ry) ** 2 + (sin * rx) ** 2
    b = 2.0 * dy * cos * sin * (ry**2 - rx**2)
    c = dy**2 * ((sin * ry) ** 2 + (cos * rx) ** 2) - (rx * ry) ** 2
    discriminant = b * b - 4.0 * a * c
    hit = discriminant > 0.0
    root = np.sqrt(discriminant[hit])
    left = cx + (-b[hit] - root) / (2.0 * a)
    right = cx + (-b[hit] + root) / (2.0 * a)
    return _spans_to_runs(rows[hit], left, right, width)


def mask_runs(mask: npt.NDArray[np.bool_]) -> Runs:
    """Runs of ``True`` in a C-contiguous ``bool`` ``(height, width)`` mask, in flat indices."""
    flat = mask.reshape(-1).view(np.int8)
    edges = np.flatnonzero(np.diff(flat, prepend=np.int8(0), append=np.int8(0)))
    return edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)


def _row_bound(ys: Floats, height: int) -> Ints:
    """First row whose centre ``row + 0.5`` is ``>= y``, clipped to ``[0, height]``; ``int64``."""
    return np.clip(np.ceil(ys - 0.5), 0, height).astype(np.int64)


def _spans_to_runs(rows: Ints, left: Floats, right: Floats, width: int) -> Runs:
    """Row spans: centres with ``left <= x < right`` on ``rows`` (sorted), as flat runs."""
    start = np.clip(np.ceil(left - 0.5), 0, width).astype(np.int64)
    stop = np.clip(np.ceil(right - 0.5), 0, width).astype(np.int64)
    kept = stop > start
    base = rows[kept].astype(np.int64) * width
    starts, stops = base + start[kept], base + stop[kept]
    # A span ending a row and one starting the next are one run: fewer, longer writes.
    joined = np.flatnonzero(stops[:-1] == starts[1:])
    return np.delete(starts, joined + 1), np.delete(stops, joined)


def _no_runs() -> Runs:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)

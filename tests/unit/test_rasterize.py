"""Rasterisation: pixel convention, rotation sense, exactness against brute force, bad input."""

from __future__ import annotations

import base64
import io
import math
import tracemalloc
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from ls_panoptic import _geometry as geometry
from ls_panoptic.errors import GeometryError, RLEError
from ls_panoptic.model import Region, RegionKind
from ls_panoptic.rasterize import shape_for

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]


def _region(kind: RegionKind, value: dict[str, Any], height: int = 50, width: int = 100) -> Region:
    return Region("r1", kind, "leaf", 0, height, width, value)


def _mask(kind: RegionKind, value: dict[str, Any], height: int = 50, width: int = 100) -> Mask:
    """Paint the region into an empty canvas; check area() agrees; return the bool mask."""
    shape = shape_for(_region(kind, value, height, width))
    canvas = np.zeros((height, width), dtype=np.int32)
    shape.paint(canvas, 1)
    assert shape.area() == int(np.count_nonzero(canvas))
    painted: Mask = canvas == 1
    return painted


def _block(height: int, width: int, rows: slice, cols: slice) -> Mask:
    expected = np.zeros((height, width), dtype=bool)
    expected[rows, cols] = True
    return expected


def _centres(height: int, width: int) -> tuple[Floats, Floats]:
    """Pixel-centre coordinates ``(x, y)``, each ``float64`` ``(height, width)``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return xs, ys


def _even_odd(points: Floats, height: int, width: int) -> Mask:
    """Independent brute force: is each pixel centre inside the polygon (pixel coordinates)?

    A ray to the right counts edge crossings; an edge counts for ``min(y) <= y < max(y)`` and a
    crossing counts when strictly right of the centre: the top-left rule of the module.
    """
    xs, ys = _centres(height, width)
    inside = np.zeros((height, width), dtype=bool)
    for (xa, ya), (xb, yb) in zip(points, np.roll(points, -1, axis=0), strict=True):
        if ya == yb:
            continue
        spans = (ya <= ys) != (yb <= ys)
        crossing = xa + (ys - ya) * (xb - xa) / (yb - ya)
        inside ^= spans & (crossing > xs)
    return inside


def _edge_distance(points: Floats, height: int, width: int) -> Floats:
    """Distance (pixels) from each pixel centre to the nearest polygon edge."""
    xs, ys = _centres(height, width)
    best = np.full((height, width), np.inf)
    for a, b in zip(points, np.roll(points, -1, axis=0), strict=True):
        d = b - a
        t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(d @ d, 1e-300), 0, 1)
        best = np.minimum(best, np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1]))
    return best


# --- rectangles: the pixel convention and the rotation sense -------------------------------


def test_rectangle_covers_exactly_the_pixel_block() -> None:
    # 100 x 50 image: x 10% -> 10 px, y 20% -> 10 px, w 30% -> 30 px, h 40% -> 20 px.
    value = {"x": 10, "y": 20, "width": 30, "height": 40}
    assert (_mask("rectangle", value) == _block(50, 100, slice(10, 30), slice(10, 40))).all()


def test_boundary_through_pixel_centres_follows_the_top_left_rule() -> None:
    # Edges at x = 10.5 and 20.5, y = 5.5 and 8.5 px pass exactly through pixel centres:
    # the left/top ones are in, the right/bottom ones out.
    value = {"x": 10.5, "y": 11, "width": 10, "height": 6}
    assert (_mask("rectangle", value) == _block(50, 100, slice(5, 8), slice(10, 20))).all()


def test_shapes_sharing_an_edge_through_centres_neither_overlap_nor_leave_gaps() -> None:
    square = [[0, 0], [20, 0], [20, 40], [0, 40]]  # 20 x 20 px on 100 x 50
    upper = _mask("polygon", {"points": [square[0], square[1], square[2]]})
    lower = _mask("polygon", {"points": [square[0], square[2], square[3]]})
    assert not (upper & lower).any()  # the diagonal runs through 20 pixel centres
    assert ((upper | lower) == _block(50, 100, slice(0, 20), slice(0, 20))).all()


def test_rectangle_rotated_90_turns_clockwise_about_its_top_left_corner() -> None:
    # Pivot (10, 10) px; the 30 x 20 px box turns onto x in [-10, 10], y in [10, 40], clipped.
    value = {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 90}
    assert (_mask("rectangle", value) == _block(50, 100, slice(10, 40), slice(0, 10))).all()


def test_rectangle_rotated_180_and_270() -> None:
    value = {"x": 50, "y": 60, "width": 30, "height": 40}  # pivot (50, 30) px, 30 x 20 px
    turned = _mask("rectangle", {**value, "rotation": 180})
    assert (turned == _block(50, 100, slice(10, 30), slice(20, 50))).all()
    turned = _mask("rectangle", {**value, "rotation": -90})  # same as 270
    assert (turned == _block(50, 100, slice(0, 30), slice(50, 70))).all()


@pytest.mark.parametrize("degrees", [30.0, -17.5, 135.0, 400.0])
def test_rotated_rectangle_matches_a_brute_force_centre_test(degrees: float) -> None:
    height, width = 60, 80
    value = {"x": 40, "y": 30, "width": 35, "height": 25, "rotation": degrees}
    xs, ys = _centres(height, width)
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    dx, dy = xs - 32.0, ys - 18.0  # offsets from the pivot, in px
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos  # back into the box's own axes
    expected = (along >= 0) & (along < 28.0) & (across >= 0) & (across < 15.0)
    got = _mask("rectangle", value, height, width)
    corners = np.array([[0, 0], [28, 0], [28, 15], [0, 15]]) @ [[cos, sin], [-sin, cos]] + [32, 18]
    # the box's own half-open rule and the screen's top-left rule differ only for centres on it
    assert (_edge_distance(corners, height, width)[got != expected] < 1e-9).all()
    assert got.sum() == pytest.approx(28 * 15, abs=28 + 15)
    if degrees == 30.0:  # clockwise on screen: the far end of the top edge lies lower
        assert got[int(18 + 28 * sin), int(32 + 28 * cos) - 1]
        assert not got[int(18 - 28 * sin), int(32 + 28 * cos) - 1]


# --- ellipses ------------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [0.0, 25.0, -60.0])
def test_ellipse_matches_a_brute_force_centre_test(degrees: float) -> None:
    height, width = 60, 90
    cx, cy, rx, ry = 45.0, 30.0, 36.0, 15.0  # percent 50, 50, 40 (of width), 25 (of height)
    value = {"x": 50, "y": 50, "radiusX": 40, "radiusY": 25, "rotation": degrees}
    xs, ys = _centres(height, width)
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    u, v = (xs - cx) * cos + (ys - cy) * sin, -(xs - cx) * sin + (ys - cy) * cos
    expected = (u / rx) ** 2 + (v / ry) ** 2 < 1
    got = _mask("ellipse", value, height, width)
    assert (got != expected).sum() == 0
    assert 0.98 < got.sum() / (math.pi * rx * ry) < 1.02


def test_ellipse_rotated_90_about_its_centre_equals_the_ellipse_with_radii_swapped() -> None:
    turned = _mask(
        "ellipse", {"x": 40, "y": 45, "radiusX": 30, "radiusY": 12.5, "rotation": 90}, 80, 80
    )
    swapped = _mask("ellipse", {"x": 40, "y": 45, "radiusX": 12.5, "radiusY": 30}, 80, 80)
    assert swapped.sum() > 500 and (turned == swapped).all()
    # rotating about the centre, not a corner: the centre pixel stays covered
    assert turned[35, 31]


# --- polygons ------------------------------------------------------------------------------


def test_random_polygons_agree_with_a_brute_force_even_odd_test() -> None:
    rng = np.random.default_rng(20250101)
    height, width = 70, 90
    total = differ = 0
    for _ in range(150):
        count = int(rng.integers(3, 14))  # self-intersecting ones too, vertices off the image
        percent = rng.uniform(-15, 115, size=(count, 2))
        pixels = percent * [width, height] / 100.0
        got = _mask("polygon", {"points": percent.tolist()}, height, width)
        expected = _even_odd(pixels, height, width)
        wrong = got != expected
        total, differ = total + got.size, differ + int(wrong.sum())
        assert (_edge_distance(pixels, height, width)[wrong] < 1e-6).all()
    assert differ / total <= 1e-3


def test_polygon_on_whole_pixels_and_half_pixel_vertices() -> None:
    # Vertices at pixel corners: a 5 x 4 px block; then a triangle whose vertices sit on centres.
    block = [[2, 4], [7, 4], [7, 12], [2, 12]]
    assert (_mask("polygon", {"points": block}) == _block(50, 100, slice(2, 6), slice(2, 7))).all()
    triangle = np.array([[2.5, 2.5], [12.5, 2.5], [2.5, 12.5]])
    got = _mask("polygon", {"points": (triangle * [1, 2]).tolist()})
    assert (got == _even_odd(triangle, 50, 100)).all()
    assert got.sum() == 10 + 9 + 8 + 7 + 6 + 5 + 4 + 3 + 2 + 1


# --- polygons swept in bands of rows (bounded memory) --------------------------------------


def _runs(points: Floats, height: int, width: int, crossings: int) -> geometry.Runs:
    """``polygon_runs`` with at most about ``crossings`` crossings per band."""
    saved = geometry.BAND_CROSSINGS
    geometry.BAND_CROSSINGS = crossings
    try:
        return geometry.polygon_runs(points, height, width)
    finally:
        geometry.BAND_CROSSINGS = saved


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> Floats:
    """Self-intersecting, partly off the image; now and then on the half-pixel grid (vertices
    on pixel centres and corners, horizontal edges, boundaries through centres)."""
    count = int(rng.integers(3, 40))
    points = rng.uniform(-0.2, 1.2, size=(count, 2)) * [width, height]
    if rng.random() < 0.4:
        points = np.round(points * 2) / 2
    return points


def test_banded_sweep_gives_exactly_the_runs_of_the_single_sweep() -> None:
    rng = np.random.default_rng(20250917)
    height, width = 60, 80
    covering = 0
    for _ in range(200):
        points = _random_polygon(rng, height, width)
        whole = _runs(points, height, width, 1 << 62)
        for crossings in (1, 3, 17, 100):  # bands of one row up to bands of many
            starts, stops = _runs(points, height, width, crossings)
            assert starts.dtype == stops.dtype == np.int64
            assert np.array_equal(starts, whole[0]) and np.array_equal(stops, whole[1])
        covering += int(np.diff(whole).sum() > 0)
    assert covering > 150


def test_runs_that_meet_at_a_band_boundary_are_joined() -> None:
    # a full-width box: every row is one span and they all join into one run
    box = np.array([[-5.0, 3.0], [90.0, 3.0], [90.0, 40.0], [-5.0, 40.0]])
    for crossings in (1, 2, 7, 1 << 62):
        starts, stops = _runs(box, 50, 80, crossings)
        assert starts.tolist() == [3 * 80] and stops.tolist() == [40 * 80]


def test_a_row_crossed_by_more_edges_than_a_band_holds_is_one_band() -> None:
    comb = [[x, 40.0 if i % 2 else 2.0] for i, x in enumerate(np.linspace(1, 79, 101))]
    points = np.array([*comb, [79.0, 45.0], [1.0, 45.0]])  # 103 edges cross most rows
    whole = _runs(points, 50, 80, 1 << 62)
    starts, stops = _runs(points, 50, 80, 10)
    np.testing.assert_array_equal(starts, whole[0])
    np.testing.assert_array_equal(stops, whole[1])


def test_the_checkpoint_is_called_once_per_band_and_can_stop_the_sweep() -> None:
    zigzag = np.array([[x, 0.0 if i % 2 else 50.0] for i, x in enumerate(np.linspace(0, 80, 40))])
    calls: list[int] = []
    saved = geometry.BAND_CROSSINGS
    geometry.BAND_CROSSINGS = 200  # 40 edges x 50 rows: about 10 bands
    try:
        geometry.polygon_runs(zigzag, 50, 80, lambda: calls.append(1))
        assert 8 <= len(calls) <= 12

        def stop() -> None:
            if len(calls) >= 3:
                raise TimeoutError
            calls.append(1)

        calls.clear()
        with pytest.raises(TimeoutError):
            geometry.polygon_runs(zigzag, 50, 80, stop)
        assert len(calls) == 3
    finally:
        geometry.BAND_CROSSINGS = saved
    calls.clear()  # a polygon of few crossings is one sweep: no checkpoint
    geometry.polygon_runs(zigzag[:5], 50, 80, lambda: calls.append(1))
    assert calls == []


def test_a_polygon_of_many_vertices_is_rasterised_in_bounded_memory() -> None:
    # 4000 edges across 1000 rows: 4 million crossings, ~180 MiB if held at once
    zigzag = np.array([[n * 0.5, 0.0 if n % 2 else 1000.0] for n in range(4000)])
    tracemalloc.start()
    try:
        starts, _stops = geometry.polygon_runs(zigzag, 1000, 2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert starts.size > 0
    assert peak < 16 * 2**20


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("polygon", {"points": [[-9e5, -9e5], [9e5, -9e5], [9e5, 9e5], [-9e5, 9e5]]}),
        ("rectangle", {"x": -5e5, "y": -5e5, "width": 1e6, "height": 1e6, "rotation": 0}),
        ("ellipse", {"x": 50, "y": 50, "radiusX": 9e5, "radiusY": 9e5, "rotation": 10}),
    ],
)
def test_huge_coordinates_are_clipped_without_image_sized_allocations(
    kind: RegionKind, value: dict[str, Any]
) -> None:
    region = _region(kind, value, 3000, 4000)
    tracemalloc.start()
    try:
        area = shape_for(region).area()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert area == 3000 * 4000
    assert peak < 1_000_000  # a 12 MP bool or int32 buffer would be 12-48 MB


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("polygon", {"points": [[10, 10], [10, 10], [10, 10]]}),
        ("polygon", {"points": [[0, 0], [50, 50], [100, 100]]}),
        ("polygon", {"points": [[200, 0], [300, 0], [300, 100]]}),
        ("rectangle", {"x": 10, "y": 10, "width": 0, "height": 40}),
        ("rectangle", {"x": -60, "y": 10, "width": 50, "height": 40}),
        ("ellipse", {"x": 10, "y": 10, "radiusX": 0, "radiusY": 4}),
    ],
)
def test_degenerate_or_off_image_shapes_are_empty(kind: RegionKind, value: dict[str, Any]) -> None:
    assert not _mask(kind, value).any()


# --- paint / area --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("polygon", {"points": [[5, 5], [90, 20], [40, 95], [60, 10]]}),
        ("rectangle", {"x": 20, "y": 10, "width": 50, "height": 70, "rotation": 33}),
        ("ellipse", {"x": 40, "y": 60, "radiusX": 25, "radiusY": 30, "rotation": 10}),
    ],
)
def test_paint_overwrites_only_covered_pixels(kind: RegionKind, value: dict[str, Any]) -> None:
    rng = np.random.default_rng(7)
    covered = _mask(kind, value)
    canvas = rng.integers(0, 1000, size=(50, 100)).astype(np.int32)
    before = canvas.copy()
    shape_for(_region(kind, value)).paint(canvas, 4242)
    assert (canvas[covered] == 4242).all()
    assert (canvas[~covered] == before[~covered]).all()
    assert 0 < covered.sum() < covered.size


def test_paint_rejects_a_canvas_it_could_not_write_in_place() -> None:
    shape = shape_for(_region("rectangle", {"x": 0, "y": 0, "width": 50, "height": 50}))
    canvases: list[tuple[npt.NDArray[Any], int]] = [
        (np.zeros((50, 101), dtype=np.int32), 1),
        (np.zeros((50, 100), dtype=np.float32), 1),
        (np.zeros((50, 100), dtype=np.uint8), 256),  # the value does not fit
        (np.zeros((100, 50), dtype=np.int32).T, 1),  # a transposed view: reshape would copy
    ]
    for canvas, value in canvases:
        with pytest.raises(ValueError, match="C-contiguous integer array"):
            shape.paint(canvas, value)


def test_paint_works_on_narrow_canvases() -> None:
    shape = shape_for(_region("rectangle", {"x": 0, "y": 0, "width": 50, "height": 50}))
    wide = np.zeros((50, 100), dtype=np.int32)
    shape.paint(wide, 200)
    for dtype in (np.uint8, np.uint16):
        narrow = np.zeros((50, 100), dtype=dtype)
        shape.paint(narrow, 200)
        np.testing.assert_array_equal(narrow, wide)


# --- bitmask -------------------------------------------------------------------------------


def _png_url(alpha: npt.NDArray[np.uint8], mode: str = "RGBA") -> str:
    rgba = np.dstack([np.full_like(alpha, 200)] * 3 + [alpha])
    image = Image.fromarray(rgba, "RGBA") if mode == "RGBA" else Image.fromarray(rgba[..., :3])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_bitmask_round_trip_from_an_rgba_png_data_url() -> None:
    rng = np.random.default_rng(11)
    alpha = np.where(rng.random((50, 100)) < 0.3, 255, 0).astype(np.uint8)
    assert (_mask("bitmask", {"imageDataURL": _png_url(alpha)}) == (alpha == 255)).all()
    # another key holding a PNG data URL is accepted too
    assert (_mask("bitmask", {"bitmask": _png_url(alpha)}) == (alpha == 255)).all()


@pytest.mark.parametrize("threshold", [1, 64, 128, 255])
def test_bitmask_thresholds_anti_aliased_alpha(threshold: int) -> None:
    alpha = np.tile(np.arange(256, dtype=np.uint8), (4, 1))  # every alpha value once per row
    region = _region("bitmask", {"imageDataURL": _png_url(alpha)}, 4, 256)
    shape = shape_for(region, brush_threshold=threshold)
    canvas = np.zeros((4, 256), dtype=np.int32)
    shape.paint(canvas, 1)
    assert ((canvas == 1) == (alpha >= threshold)).all()
    assert shape.area() == 4 * (256 - threshold)


# --- brush ---------------------------------------------------------------------------------


def _brush_rle(alpha: npt.NDArray[np.uint8]) -> list[int]:
    """Minimal Label Studio RLE encoder (RGBA bytes R=G=B=A=alpha; only 16-bit repeat records)."""
    data = np.repeat(alpha.reshape(-1), 4)
    bits = [format(data.size, "032b"), format(7, "05b"), "0010", "0011", "0111", "1111"]
    edges = np.flatnonzero(np.diff(data.astype(np.int16))) + 1
    for start, stop in zip([0, *edges.tolist()], [*edges.tolist(), data.size], strict=True):
        for chunk in range(start, stop, 65536):
            length = min(stop, chunk + 65536) - chunk
            bits.append("1" + "11" + format(length - 1, "016b") + format(data[chunk], "08b"))
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


def test_brush_rle_is_decoded_thresholded_and_painted() -> None:
    alpha = np.zeros((30, 40), dtype=np.uint8)
    alpha[5:20, 8:30] = 255
    alpha[5:20, 7] = 100  # anti-aliased fringe: below the default threshold of 128
    alpha[5:20, 30] = 128  # exactly at the threshold: in
    value = {"format": "rle", "rle": _brush_rle(alpha)}
    assert (_mask("brush", value, 30, 40) == (alpha >= 128)).all()
    region = _region("brush", value, 30, 40)
    assert shape_for(region, brush_threshold=100).area() == int((alpha >= 100).sum())


def test_brush_rle_errors_propagate_as_rle_errors() -> None:
    value = {"format": "rle", "rle": _brush_rle(np.zeros((30, 40), dtype=np.uint8))}
    with pytest.raises(RLEError):
        shape_for(_region("brush", value, 31, 40))


# --- bad input -----------------------------------------------------------------------------

_RGB_PNG = _png_url(np.zeros((50, 100), dtype=np.uint8), mode="RGB")
_PNG = _png_url(np.zeros((50, 100), dtype=np.uint8))
_TRUNCATED_PNG = (
    "data:image/png;base64," + base64.b64encode(base64.b64decode(_PNG.split(",")[1])[:60]).decode()
)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("polygon", {}, "'points' is missing"),
        ("polygon", {"points": "10,10 20,20"}, "not a list of [x, y] pairs"),
        ("polygon", {"points": [[1, 1], [2, 2]]}, "needs at least 3 points, got 2"),
        ("polygon", {"points": [[1, 1], [2, 2], [3]]}, "point 2 is [3], not an [x, y] pair"),
        ("polygon", {"points": [[1, 1], [2, "a"], [3, 3]]}, "point 1 y is 'a', not a number"),
        ("polygon", {"points": [[1, 1], [2, 2], [None, 3]]}, "point 2 x is None, not a number"),
        ("polygon", {"points": [[1, 1], [2, 2], [float("nan"), 3]]}, "point 2 is [nan, 3]"),
        ("polygon", {"points": [[1, 1], [float("inf"), 2], [3, 3]]}, "not finite"),
        (
            "polygon",
            {"points": [[1, 1], [2, 2], [3, 1e300]]},
            "point 2 = 1e+300% is implausibly far off the image (±1e+06%)",
        ),
        (
            "polygon",
            {"points": [[1, 1], [2, 2], [10**400, 3]]},
            "point 2 x is 1000000000000000000000000000000000000..., not a finite",
        ),
        ("rectangle", {"y": 1, "width": 2, "height": 3}, "'x' is missing"),
        ("rectangle", {"x": 1, "y": 1, "width": -2, "height": 3}, "width is negative (-2%)"),
        ("rectangle", {"x": 1, "y": 1, "width": 2, "height": "3"}, "height is '3', not a number"),
        ("rectangle", {"x": 1, "y": 1, "width": 2, "height": 3, "rotation": "a"}, "rotation"),
        ("rectangle", {"x": True, "y": 1, "width": 2, "height": 3}, "x is True, not a number"),
        ("rectangle", {"x": 1, "y": 1, "width": float("nan"), "height": 3}, "width is nan"),
        ("ellipse", {"x": 1, "y": 1, "radiusX": 2}, "'radiusY' is missing"),
        ("ellipse", {"x": 1, "y": 1, "radiusX": 2, "radiusY": -1}, "radiusY is negative"),
        (
            "ellipse",
            {"x": 1e7, "y": 1, "radiusX": 2, "radiusY": 1},
            "x = 1e+07% is implausibly far",
        ),
        ("bitmask", {}, "no 'imageDataURL'"),
        ("bitmask", {"imageDataURL": "data:image/jpeg;base64,AAAA"}, "not a data:image/png"),
        ("bitmask", {"imageDataURL": "data:image/png;base64,@@@"}, "not valid base64"),
        ("bitmask", {"imageDataURL": "data:image/png;base64,AAAA"}, "does not hold a PNG"),
        (
            "bitmask",
            {"imageDataURL": _TRUNCATED_PNG},
            "PNG cannot be decoded (image file is truncated)",
        ),
        ("bitmask", {"imageDataURL": _RGB_PNG}, "(mode RGB) has no alpha channel"),
        ("brush", {"format": "png", "rle": [1]}, "format 'png' is not supported; only 'rle' is"),
        ("brush", {"format": "rle"}, "'rle' is missing"),
        ("brush", {"format": "rle", "rle": "AAAA"}, "'rle' is 'AAAA', not a list of integers"),
    ],
)
def test_bad_geometry_raises_a_geometry_error_saying_what(
    kind: RegionKind, value: dict[str, Any], message: str
) -> None:
    with pytest.raises(GeometryError) as info:
        shape_for(_region(kind, value))
    assert message in str(info.value)


def test_bitmask_of_the_wrong_size_is_refused_naming_both_sizes() -> None:
    url = _png_url(np.zeros((20, 30), dtype=np.uint8))
    with pytest.raises(GeometryError, match="PNG is 30x20, the image 100x50"):
        shape_for(_region("bitmask", {"imageDataURL": url}))


def test_bad_image_size_kind_and_threshold() -> None:
    with pytest.raises(GeometryError, match="image size 100x0 is not positive"):
        shape_for(_region("polygon", {"points": [[1, 1], [2, 2], [3, 1]]}, height=0))
    with pytest.raises(GeometryError, match="'keypoint' has no area"):
        shape_for(_region("keypoint", {"x": 1, "y": 1}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"brush_threshold must be in 1\.\.255"):
        shape_for(_region("polygon", {"points": [[1, 1], [2, 2], [3, 1]]}), brush_threshold=0)

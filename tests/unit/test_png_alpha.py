"""The fast bitmask alpha decoder (ls_panoptic._png_alpha) gives Pillow's alpha, pixel for pixel.

PNGs from three encoders: Pillow (adaptive filters, what the synthetic data and scene use),
OpenCV (libpng), and a filter-by-filter encoder here, so every filter type (None, Sub, Up,
Average, Paeth) and mixes of them are decoded both ways. Odd PNGs (palette with tRNS, grey with
tRNS, 16-bit, interlaced, another size, a bad CRC) go to Pillow unchanged.
"""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from ls_panoptic._png_alpha import fast_alpha
from ls_panoptic.errors import GeometryError
from ls_panoptic.rasterize import PNG_DATA_URL_PREFIX, _png_alpha

Array = npt.NDArray[np.uint8]


def pillow_alpha(png: bytes) -> Array:
    """What the converter decoded before: Pillow, converted to RGBA, alpha channel."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGBA").getchannel("A"))


def pillow_png(array: Array, mode: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, "PNG", **options)
    return buffer.getvalue()


def soft_blob(rng: np.random.Generator, height: int, width: int) -> Array:
    """Anti-aliased blobs with noise: coverage like the editor's, and every alpha value."""
    yy, xx = np.mgrid[0:height, 0:width]
    field = np.zeros((height, width))
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(3, height / 2)
        field += np.clip(r - np.hypot(yy - cy, xx - cx), 0, 2) * 127.5
    field += rng.integers(0, 2, (height, width)) * (field > 0) * 3
    return np.clip(field, 0, 255).astype(np.uint8)


def rgba_of(alpha: Array, rng: np.random.Generator) -> Array:
    colour = rng.integers(0, 256, (*alpha.shape, 3), dtype=np.uint8)
    return np.dstack([colour, alpha])


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filtered_png(pixels: Array, filters: list[int], colour_type: int) -> bytes:
    """An 8-bit PNG of ``pixels`` (H, W, channels) with row ``i`` filtered by ``filters[i]``."""
    height, width, channels = pixels.shape
    lines = pixels.reshape(height, width * channels).astype(np.int64)
    out = bytearray()
    for row, kind in enumerate(filters):
        line, prior = lines[row], lines[row - 1] if row else np.zeros_like(lines[0])
        left = np.concatenate([np.zeros(channels, np.int64), line[:-channels]])
        upleft = np.concatenate([np.zeros(channels, np.int64), prior[:-channels]])
        if kind == 0:
            predicted = np.zeros_like(line)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = prior
        elif kind == 3:
            predicted = (left + prior) // 2
        else:
            predicted = np.array([_paeth(*abc) for abc in zip(left, prior, upleft, strict=True)])
        out.append(kind)
        out += ((line - predicted) % 256).astype(np.uint8).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(out, 9))]
    ) + chunk(b"IEND", b"")


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def assert_same(png: bytes, *, fast: bool) -> None:
    height, width = pillow_alpha(png).shape
    got = fast_alpha(png, height, width)
    if not fast:
        assert got is None
        got = _png_alpha(PNG_DATA_URL_PREFIX + base64.b64encode(png).decode(), height, width)
    assert got is not None
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, pillow_alpha(png))


@pytest.mark.parametrize("seed", range(3))
def test_pillow_and_opencv_rgba_pngs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgba = rgba_of(soft_blob(rng, 97, 131), rng)
    assert_same(pillow_png(rgba, "RGBA"), fast=True)
    assert_same(pillow_png(rgba, "RGBA", optimize=True), fast=True)
    for level in (0, 1, 9):
        ok, encoded = cv2.imencode(
            ".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, level]
        )
        assert ok
        assert_same(encoded.tobytes(), fast=True)


@pytest.mark.parametrize(
    "filters",
    [
        "all none",
        "all sub",
        "all up",
        "up first, then mixed none/sub/up",
        "all average",
        "all paeth",
        "random",
    ],
)
def test_every_filter_type(filters: str) -> None:
    rng = np.random.default_rng(len(filters))
    height = 23
    rgba = rgba_of(soft_blob(rng, height, 37), rng)
    kinds = {
        "all none": [0] * height,
        "all sub": [1] * height,
        "all up": [2] * height,
        "up first, then mixed none/sub/up": [2, 2, *rng.integers(0, 3, height - 2).tolist()],
        "all average": [3] * height,
        "all paeth": [4] * height,
        "random": rng.integers(0, 5, height).tolist(),
    }[filters]
    assert_same(filtered_png(rgba, kinds, 6), fast=True)
    grey_alpha = np.dstack([rgba[:, :, 0], rgba[:, :, 3]])
    assert_same(filtered_png(grey_alpha, kinds, 4), fast=True)


def test_grey_alpha_from_pillow() -> None:
    rng = np.random.default_rng(7)
    alpha = soft_blob(rng, 40, 50)
    assert_same(pillow_png(np.dstack([alpha // 2, alpha]), "LA"), fast=True)


def test_odd_pngs_left_to_pillow() -> None:
    rng = np.random.default_rng(11)
    alpha = soft_blob(rng, 30, 41)
    palette = Image.fromarray(alpha // 64, "L").convert("P")
    palette.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=bytes([0, 90, 200, 255]))
    assert Image.open(io.BytesIO(buffer.getvalue())).mode == "P"
    assert_same(buffer.getvalue(), fast=False)  # palette + tRNS

    buffer = io.BytesIO()
    Image.fromarray(alpha // 64, "L").save(buffer, "PNG", transparency=0)
    assert_same(buffer.getvalue(), fast=False)  # grey + tRNS

    deep = (rgba_of(alpha, rng).astype(np.uint16) * 257 + rng.integers(0, 256, (30, 41, 4))).astype(
        np.uint16
    )
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(deep, cv2.COLOR_RGBA2BGRA))
    assert ok
    with Image.open(io.BytesIO(encoded.tobytes())) as image:
        assert image.info.get("dpi") is None and image.mode == "RGBA"  # 16-bit, read as RGBA
    assert_same(encoded.tobytes(), fast=False)  # 16-bit RGBA

    interlaced = pillow_png(rgba_of(alpha, rng), "RGBA")
    header = bytearray(interlaced[16:29])
    header[12] = 1  # an Adam7 flag on a non-interlaced stream: Pillow's business, not ours
    broken = interlaced[:8] + chunk(b"IHDR", bytes(header)) + interlaced[33:]
    assert fast_alpha(broken, 30, 41) is None


def test_wrong_size_and_corruption_are_pillows_errors() -> None:
    rng = np.random.default_rng(3)
    png = pillow_png(rgba_of(soft_blob(rng, 20, 30), rng), "RGBA")
    assert fast_alpha(png, 20, 31) is None
    url = PNG_DATA_URL_PREFIX + base64.b64encode(png).decode()
    with pytest.raises(GeometryError, match="PNG is 30x20, the image 31x20"):
        _png_alpha(url, 20, 31)
    bad_crc = bytearray(png)
    bad_crc[-20] ^= 0xFF  # inside the last IDAT chunk's data
    assert fast_alpha(bytes(bad_crc), 20, 30) is None
    header = struct.pack(">IIBBBBB", 30, 20, 8, 6, 0, 0, 0)
    garbage = b"".join(
        [png[:8], chunk(b"IHDR", header), chunk(b"IDAT", b"not deflate"), chunk(b"IEND", b"")]
    )
    assert fast_alpha(garbage, 20, 30) is None  # sound chunks, a stream that does not inflate
    bomb = b"".join(
        [png[:8], chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(bytes(10**8), 9))]
    ) + chunk(b"IEND", b"")  # 100 kB that inflate to 100 MB, for an image of 2.4 kB
    tracemalloc.start()
    try:
        assert fast_alpha(bomb, 20, 30) is None  # refused after 2.4 kB: Pillow decides
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # the 100 MB were never inflated
    truncated = png[: len(png) // 2]
    assert fast_alpha(truncated, 20, 30) is None
    with pytest.raises(GeometryError):
        _png_alpha(PNG_DATA_URL_PREFIX + base64.b64encode(truncated).decode(), 20, 30)


def test_synthetic_1080p_bitmask() -> None:
    """The scale bench's bitmask (devstack.synthetic): a full-size Pillow PNG."""
    from devstack import synthetic

    url = synthetic._bitmask(np.random.default_rng(0), 1080, 1920)["imageDataURL"]
    png = base64.b64decode(url[len(PNG_DATA_URL_PREFIX) :])
    assert_same(png, fast=True)

"""The alpha channel of an 8-bit RGBA or grey+alpha PNG, without decoding the colour.

A 1080p bitmask is a ~12 KB PNG of 8 MB of RGBA pixels, nearly all transparent. Pillow spends
~18 ms on it, most of that in zlib inflating those long runs of zeros; ISA-L's inflate (``isal``,
the same standard zlib stream) takes ~2 ms. So the common case is decoded here:

1. the chunks are read and their CRCs checked; the IDAT stream is inflated with ISA-L;
2. only the alpha byte of each pixel is kept, with each row's filter type. PNG filters work
   byte by byte on the byte ``bpp`` places back (the same channel of the previous pixel) and on
   the byte above, so these bytes are, on their own, the filtered rows of an 8-bit grey image
   with the same filter types;
3. when no row is filtered these are the alpha values; otherwise they are wrapped as a grey PNG,
   stored uncompressed, for Pillow to unfilter (in C: ~1 ms at 1080p; numpy's running sums
   for Sub alone took ~5 ms, and Average and Paeth are sequential per pixel).

Anything else (16-bit, palette, tRNS, interlaced, another colour type, or any irregularity such
as a bad CRC, a truncated or overlong stream or an unknown filter) returns ``None``: the caller
decodes with Pillow as before, so results and error messages there are Pillow's. The output is
identical to ``np.asarray(Image.open(png).convert("RGBA").getchannel("A"))`` (tests/unit/
test_png_alpha.py holds it to that on Pillow's, OpenCV's and hand-filtered PNGs, tests/e2e/
test_bitmask_browser.py on Chromium's canvas PNGs, whose rows are all filtered Up).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import numpy.typing as npt
from isal import isal_zlib
from PIL import Image

from .png import SIGNATURE, png_file

__all__ = ["fast_alpha"]

_ALPHA_COLOUR_TYPES = {6: 4, 4: 2}  # RGBA, grey+alpha: bytes per pixel at 8 bits; alpha last
_LAST_FILTER = 4  # Paeth
_REFUSED_ANCILLARY = frozenset({b"tRNS"})  # not valid with an alpha channel: Pillow decides


def fast_alpha(png: bytes, height: int, width: int) -> npt.NDArray[np.uint8] | None:
    """Alpha of an 8-bit, non-interlaced RGBA or LA ``png`` of ``width`` x ``height``: ``uint8``
    ``(height, width)``, C-contiguous; ``None`` for any other PNG, or another size (nothing is
    inflated then: decode it with Pillow, which checks the size first)."""
    parsed = _parse(png)
    if parsed is None or parsed[:2] != (width, height):
        return None
    bpp, stream = parsed[2:]
    stride = 1 + width * bpp
    inflate = isal_zlib.decompressobj()
    try:  # never more than one byte past the image: a stream that inflates further is refused
        raw = inflate.decompress(stream, stride * height + 1)
    except (isal_zlib.error, ValueError):  # type: ignore[misc]  # isal stubs: error untyped
        return None
    if len(raw) != stride * height or not inflate.eof:  # overlong or truncated
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride)
    filters = rows[:, 0]
    if filters.max(initial=0) > _LAST_FILTER:
        return None
    alpha = rows[:, bpp::bpp]  # each pixel's last byte: its alpha, still filtered
    if not filters.any():  # no row filtered: the bytes are the alpha
        return np.ascontiguousarray(alpha)
    return _unfilter_with_pillow(filters, alpha)


def _parse(png: bytes) -> tuple[int, int, int, bytes] | None:
    """``(width, height, bytes per pixel, IDAT stream)`` when ``png`` is one this module decodes."""
    if not png.startswith(SIGNATURE):
        return None
    view, position, header = memoryview(png), len(SIGNATURE), None
    data: list[memoryview] = []
    previous = b""
    while position + 12 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, position)
        end = position + 8 + length
        if end + 4 > len(png):
            return None
        body = view[position + 8 : end]
        (crc,) = struct.unpack_from(">I", png, end)
        if isal_zlib.crc32(body, isal_zlib.crc32(kind)) != crc:
            return None
        position = end + 4
        if header is None:
            if kind != b"IHDR" or length != 13:
                return None
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            if data and previous != b"IDAT":  # IDAT chunks must be consecutive
                return None
            data.append(body)
        elif kind == b"IEND":
            break
        elif data or kind[0] & 0x20 == 0 or kind in _REFUSED_ANCILLARY:
            return None  # after the data, critical (PLTE...), or tRNS: leave it to Pillow
        previous = kind
    else:
        return None  # no IEND
    if header is None or not data:
        return None
    width, height, depth, colour, compression, filter_method, interlace = header
    bpp = _ALPHA_COLOUR_TYPES.get(colour)
    if bpp is None or depth != 8 or (compression, filter_method, interlace) != (0, 0, 0):
        return None
    return width, height, bpp, b"".join(data)


def _unfilter_with_pillow(
    filters: npt.NDArray[np.uint8], filtered: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8] | None:
    """Undo any filters by handing the rows to Pillow as an uncompressed 8-bit grey PNG."""
    height, width = filtered.shape
    rows = np.empty((height, width + 1), np.uint8)
    rows[:, 0] = filters
    rows[:, 1:] = filtered
    png = png_file(width, height, 0, zlib.compress(rows.tobytes(), 0))  # 0: grey, stored
    try:
        with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError):
        return None

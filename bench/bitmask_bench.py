"""Bitmask PNG alpha decoding: ls_panoptic's decoder (ISA-L inflate, alpha only) against Pillow
and OpenCV, in the same run.

The masks are the scale bench's (devstack.synthetic ``_bitmask``: a 1080p RGBA PNG from Pillow,
one soft blob, adaptive filters) plus the same alpha
re-encoded with every row filtered Sub, or Up (as Chromium's canvas ``toDataURL`` writes it,
tests/e2e/test_bitmask_browser.py). Each
decoder turns base64-decoded PNG bytes into the ``uint8`` alpha plane:

    before   Pillow: open, convert to RGBA if needed, getchannel("A"), np.asarray (the old code)
    opencv   cv2.imdecode(IMREAD_UNCHANGED), then the alpha channel copied out
    ours     ls_panoptic.rasterize._png_alpha as installed (fast_alpha, else Pillow)

Decoders take turns mask by mask; the table gives the median time per mask and the ratio of
medians (before / decoder: above 1 is faster than before). Outputs are checked equal.

    python bench/bitmask_bench.py [--masks 10] [--repeat 5] [--size 1920x1080]

No pass/fail: results go to stdout.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devstack import synthetic
from ls_panoptic.rasterize import PNG_DATA_URL_PREFIX, _png_alpha

Alpha = npt.NDArray[np.uint8]


def before(png: bytes, height: int, width: int) -> Alpha:
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        return np.asarray(rgba.getchannel("A"), dtype=np.uint8)


def opencv(png: bytes, height: int, width: int) -> Alpha:
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels is not None
    return np.ascontiguousarray(pixels[:, :, 3])


def ours(png: bytes, height: int, width: int) -> Alpha:
    url = PNG_DATA_URL_PREFIX + base64.b64encode(png).decode("ascii")
    return _png_alpha(url, height, width)


def filtered_png(alpha: Alpha, kind: int) -> bytes:
    """RGBA (black, ``alpha``) PNG with every row filtered Sub (``kind`` 1) or Up (2, as
    Chromium's canvas writes them), deflated at zlib level 6."""
    height, width = alpha.shape
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[:, :, 3] = alpha
    lines = rgba.reshape(height, width * 4)
    filtered = np.empty((height, width * 4 + 1), np.uint8)
    filtered[:, 0] = kind
    if kind == 1:
        left = np.concatenate([np.zeros((height, 4), np.uint8), lines[:, :-4]], 1)
        filtered[:, 1:] = lines - left
    else:
        filtered[:, 1:] = lines - np.concatenate([np.zeros((1, width * 4), np.uint8), lines[:-1]])
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    idat = zlib.compress(filtered.tobytes(), 6)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--masks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    rng = np.random.default_rng(0)
    pillow_pngs = [
        base64.b64decode(
            synthetic._bitmask(rng, height, width)["imageDataURL"][len(PNG_DATA_URL_PREFIX) :]
        )
        for _ in range(args.masks)
    ]
    sets = {
        "Pillow PNG (adaptive filters)": pillow_pngs,
        "Sub-filtered PNG": [filtered_png(before(png, height, width), 1) for png in pillow_pngs],
        "Up-filtered PNG (as Chromium)": [
            filtered_png(before(png, height, width), 2) for png in pillow_pngs
        ],
    }
    decoders: dict[str, Callable[[bytes, int, int], Alpha]] = {
        "before (Pillow)": before,
        "opencv": opencv,
        "ours": ours,
    }
    print(f"bitmask bench: {args.masks} masks of {width}x{height}, {args.repeat} rounds")
    for label, pngs in sets.items():
        kb = statistics.mean(len(png) for png in pngs) / 1024
        times: dict[str, list[float]] = {name: [] for name in decoders}
        for _ in range(args.repeat):
            for png in pngs:
                reference = before(png, height, width)
                for name, decode in decoders.items():
                    start = time.perf_counter()
                    alpha = decode(png, height, width)
                    times[name].append(time.perf_counter() - start)
                    if not np.array_equal(alpha, reference):
                        raise SystemExit(f"{name} differs from Pillow on a {label}")
        base = statistics.median(times["before (Pillow)"])
        print(f"\n{label}, {kb:.1f} KB each")
        print(f"  {'decoder':<18}{'median ms':>10}{'ratio':>8}")
        for name, measured in times.items():
            median = statistics.median(measured)
            print(f"  {name:<18}{median * 1000:>10.2f}{base / median:>8.2f}")


if __name__ == "__main__":
    main()

"""Bitmask PNGs as the editor writes them: a real Chromium canvas's ``toDataURL("image/png")``
(Label Studio 1.23's BitmaskRegion saves ``getImageSnapshotCanvas().toDataURL("image/png")``),
decoded by the fast alpha decoder (ls_panoptic._png_alpha) exactly as Pillow decodes it.

Chromium (Skia) filters every row Up, so these take the decoder's Pillow-unfilter path; the
strokes are anti-aliased and partly translucent, so every alpha level occurs. No Label Studio
is needed: only the browser's PNG encoder is under test.
"""

from __future__ import annotations

import base64
import io
import os
import zlib

import numpy as np
import pytest
from PIL import Image

from ls_panoptic._png_alpha import _parse, fast_alpha
from ls_panoptic.rasterize import PNG_DATA_URL_PREFIX, _png_alpha

from .editor import browser_problem, find_chromium

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - browser_problem says so
    sync_playwright = None  # type: ignore[assignment]

_DRAW_JS = """([width, height]) => {
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const g = canvas.getContext('2d');
  g.fillStyle = 'rgba(0, 0, 0, 1)';  // the editor's mask: black, coverage in alpha
  g.beginPath(); g.arc(width * 0.35, height * 0.45, height * 0.24, 0, 2 * Math.PI); g.fill();
  g.lineWidth = height * 0.04; g.lineCap = 'round'; g.lineJoin = 'round';
  g.strokeStyle = 'rgba(0, 0, 0, 1)';
  g.beginPath(); g.moveTo(width * 0.05, height * 0.1);
  g.bezierCurveTo(width * 0.3, 0, width * 0.5, height * 0.8, width * 0.9, height * 0.75);
  g.stroke();
  g.globalAlpha = 0.6;  // translucent paint: alpha levels between the edges too
  g.strokeStyle = 'rgba(30, 160, 90, 0.8)'; g.lineWidth = height * 0.012;
  g.beginPath(); g.moveTo(width * 0.1, height * 0.9); g.lineTo(width * 0.95, height * 0.05);
  g.stroke();
  return canvas.toDataURL('image/png');
}"""


def _browser_pngs(sizes: list[tuple[int, int]]) -> list[bytes]:
    problem = browser_problem()
    if problem:
        if os.environ.get("LS_E2E_REQUIRED") == "1":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    assert sync_playwright is not None
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            page = browser.new_page()
            urls = [page.evaluate(_DRAW_JS, [width, height]) for width, height in sizes]
        finally:
            browser.close()
    assert all(url.startswith(PNG_DATA_URL_PREFIX) for url in urls)
    return [base64.b64decode(url[len(PNG_DATA_URL_PREFIX) :]) for url in urls]


def test_chromium_canvas_bitmasks_decode_as_pillow_does() -> None:
    sizes = [(1920, 1080), (641, 479), (197, 131)]
    for (width, height), png in zip(sizes, _browser_pngs(sizes), strict=True):
        with Image.open(io.BytesIO(png)) as image:
            assert (image.mode, image.size) == ("RGBA", (width, height))
            expected = np.asarray(image.getchannel("A"))
        assert np.unique(expected).size > 50  # anti-aliased, translucent: many levels
        parsed = _parse(png)
        assert parsed is not None  # 8-bit RGBA, not interlaced: the fast decoder's
        rows = np.frombuffer(zlib.decompress(parsed[3]), np.uint8).reshape(height, -1)
        assert rows[:, 0].any()  # filtered rows: the unfilter path is exercised
        fast = fast_alpha(png, height, width)
        assert fast is not None
        np.testing.assert_array_equal(fast, expected)
        url = PNG_DATA_URL_PREFIX + base64.b64encode(png).decode("ascii")
        np.testing.assert_array_equal(_png_alpha(url, height, width), expected)

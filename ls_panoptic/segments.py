"""Per-segment facts of a panoptic mask (area, bounding box) and the photo beside it.

:func:`segment_stats` finds every segment's area and box from the mask's horizontal runs: one
comparison pass over the pixels, then work on the runs only (a 12 MP mask of 30 segments has
tens of thousands of runs, not millions of pixels), about 15 ms at 12 MP where a pass per
segment would cost ~5 ms each.

:func:`displayed_photo` gives an image file's bytes in the frame of its mask: the file's own
bytes when the frames agree (no decoding, no loss), else the pixels turned as the mask is
(EXIF applied, :mod:`ls_panoptic.orientation`) and re-encoded in the file's format (JPEG at
quality 95: the photo is not the ground truth; PNG and others losslessly), without an EXIF
orientation tag, so no reader turns it again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from .errors import ImageError
from .images import ImageInfo
from .model import Orientation
from .orientation import display_image

__all__ = ["SegmentStats", "displayed_photo", "segment_stats"]

_JPEG_QUALITY = 95


@dataclass(frozen=True)
class SegmentStats:
    """Segments of one mask, by increasing id.

    Attributes:
        ids: ``int64`` ``(n,)``, the ids present.
        areas: ``int64`` ``(n,)``, pixels per segment.
        boxes: ``int64`` ``(n, 4)``, ``x, y, width, height`` (COCO's ``bbox``), in pixels.
    """

    ids: npt.NDArray[np.int64]
    areas: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.int64]


def segment_stats(mask: npt.NDArray[Any]) -> SegmentStats:
    """Area and bounding box of every id in ``mask`` (``(height, width)``, integer dtype)."""
    width = mask.shape[1]
    flat = np.ascontiguousarray(mask).reshape(-1)
    change = np.empty(flat.size, dtype=bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    change[::width] = True  # every row starts a run
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = flat.size - 1
    rows = starts // width
    first_col = starts - rows * width
    last_col = ends - rows * width
    order = np.argsort(flat[starts], kind="stable")
    run_ids = flat[starts][order].astype(np.int64)
    ids, first = np.unique(run_ids, return_index=True)
    rows, first_col, last_col = rows[order], first_col[order], last_col[order]
    areas = np.add.reduceat(last_col - first_col + 1, first)
    x0 = np.minimum.reduceat(first_col, first)
    x1 = np.maximum.reduceat(last_col, first)
    y0 = np.minimum.reduceat(rows, first)
    y1 = np.maximum.reduceat(rows, first)
    boxes = np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1).astype(np.int64)
    return SegmentStats(ids, areas.astype(np.int64), boxes)


def displayed_photo(image: ImageInfo, orientation: Orientation) -> tuple[bytes, str]:
    """The photo's encoded bytes in its mask's frame, and its format's file suffix (``.jpg``).

    ``orientation``: the conversion's (``display``: as the browser shows the image, EXIF
    applied; ``file``: the stored pixel grid). A photo with an EXIF orientation other than 1 is
    always re-encoded without the tag: readers such as ``datasets`` turn a tagged photo on
    decoding, which would take a ``file``-frame photo away from its mask.

    Raises:
        ImageError: the file cannot be read.
    """
    try:
        data = image.path.read_bytes()
        if image.orientation == 1:
            return data, _suffix(image)
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "PNG"
            img.load()
            turned = display_image(img, image.orientation) if orientation == "display" else img
            out = io.BytesIO()
            if fmt == "JPEG":
                turned.save(out, format="JPEG", quality=_JPEG_QUALITY)
                return out.getvalue(), ".jpg"
            turned.save(out, format="PNG", compress_level=1)
            return out.getvalue(), ".png"
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read image {image.path}: {exc}") from None


def _suffix(image: ImageInfo) -> str:
    suffix = image.path.suffix.lower()
    return ".jpg" if suffix == ".jpeg" else suffix

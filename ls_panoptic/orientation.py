"""EXIF orientation: between the stored pixel grid and the frame the browser shows (DESIGN 3.5).

Label Studio coordinates live in the *display* frame, ``ImageOps.exif_transpose(image)``. The
``file`` output orientation maps a display-frame mask back onto the *stored* grid.

EXIF orientation values and the transpose ``exif_transpose`` applies (stored -> display)::

    1  none                 5  TRANSPOSE   (swaps height and width)
    2  FLIP_LEFT_RIGHT      6  ROTATE_270  (swaps; 90 degrees clockwise)
    3  ROTATE_180           7  TRANSVERSE  (swaps)
    4  FLIP_TOP_BOTTOM      8  ROTATE_90   (swaps; 90 degrees counter-clockwise)

Arrays are ``(height, width)`` or ``(height, width, channels)``, indexed ``[row, col]``.
"""

from __future__ import annotations

import struct
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = [
    "EXIF_ERRORS",
    "ORIENTATION_TAG",
    "display_image",
    "display_size",
    "exif_orientation",
    "orientation_from_exif",
    "to_display_frame",
    "to_file_frame",
]

#: The EXIF tag id of Orientation.
ORIENTATION_TAG = 0x0112
#: What Pillow may raise on a corrupt EXIF block; such EXIF counts as absent.
EXIF_ERRORS = (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError, struct.error)
_SWAPS_AXES = frozenset({5, 6, 7, 8})
_PIL_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ScalarT = TypeVar("ScalarT", bound=np.generic)


def orientation_from_exif(exif: Image.Exif) -> int:
    """The orientation value of an EXIF block: 1..8, and 1 when absent or invalid."""
    value = exif.get(ORIENTATION_TAG, 1)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 8:
        return value
    return 1


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation of ``img`` as ``exif_transpose`` reads it: 1..8, 1 when absent/invalid.

    Unreadable EXIF counts as absent. Pillow loads the pixels of a PNG whose EXIF is not in its
    header; :mod:`ls_panoptic.images` avoids that for header-only reads.
    """
    try:
        return orientation_from_exif(img.getexif())
    except EXIF_ERRORS:
        return 1


def display_size(stored_size_hw: tuple[int, int], orientation: int) -> tuple[int, int]:
    """``(height, width)`` as ``exif_transpose`` shows an image stored as ``stored_size_hw``."""
    height, width = stored_size_hw
    return (width, height) if orientation in _SWAPS_AXES else (height, width)


def display_image(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` (its stored pixel grid) turned as :func:`to_display_frame` turns an array, by
    Pillow itself: no numpy copy, the image's mode kept; ``img`` when nothing is to turn."""
    transpose = _PIL_TRANSPOSE.get(orientation)
    return img if transpose is None else img.transpose(transpose)


def to_display_frame(array: NDArray[ScalarT], orientation: int) -> NDArray[ScalarT]:
    """Apply what ``exif_transpose`` does to a stored-frame array; C-contiguous result."""
    _check(array, orientation)
    return np.ascontiguousarray(_transpose(array, orientation))


def _transpose(a: NDArray[ScalarT], orientation: int) -> NDArray[ScalarT]:
    """A view of ``a`` with Pillow's transpose for ``orientation`` applied."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return a[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


def to_file_frame(mask: NDArray[ScalarT], orientation: int) -> NDArray[ScalarT]:
    """Undo ``exif_transpose`` on a display-frame array: the same data on the stored pixel grid.

    Args:
        mask: ``(height, width[, channels])`` in the display frame, any dtype.
        orientation: the image's EXIF orientation, 1..8.

    Returns:
        A C-contiguous array of the same dtype in the stored frame (a copy unless orientation is 1
        and ``mask`` is already C-contiguous).

    Raises:
        ValueError: orientation outside 1..8, or fewer than 2 dimensions.
    """
    _check(mask, orientation)
    # 6 and 8 are each other's inverse; every other transpose undoes itself.
    inverse = {6: 8, 8: 6}.get(orientation, orientation)
    return to_display_frame(mask, inverse)


def _check(array: NDArray[Any], orientation: int) -> None:
    if isinstance(orientation, bool) or orientation not in range(1, 9):
        raise ValueError(f"EXIF orientation must be 1..8, got {orientation!r}")
    if array.ndim < 2:
        raise ValueError(f"expected a (height, width) array, got shape {array.shape}")

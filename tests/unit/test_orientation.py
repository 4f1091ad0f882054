"""EXIF orientation, checked against Pillow's own ``exif_transpose``."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from ls_panoptic.orientation import (
    ORIENTATION_TAG,
    display_size,
    exif_orientation,
    to_display_frame,
    to_file_frame,
)

ORIENTATIONS = range(1, 9)


def stored_image(orientation: int | None, size_wh: tuple[int, int] = (7, 4)) -> Image.Image:
    """A lossless (PNG) image with distinct pixel values and the given EXIF orientation."""
    rng = np.random.default_rng(orientation or 0)
    pixels = rng.integers(0, 256, size=(size_wh[1], size_wh[0]), dtype=np.uint8)
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif.tobytes())
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_to_file_frame_inverts_exif_transpose(orientation: int) -> None:
    stored = stored_image(orientation)
    display = ImageOps.exif_transpose(stored)
    back = to_file_frame(np.asarray(display), orientation)
    np.testing.assert_array_equal(back, np.asarray(stored))
    assert back.flags.c_contiguous and back.dtype == np.uint8


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_to_display_frame_matches_exif_transpose(orientation: int) -> None:
    stored = stored_image(orientation)
    shown = to_display_frame(np.asarray(stored), orientation)
    np.testing.assert_array_equal(shown, np.asarray(ImageOps.exif_transpose(stored)))
    assert shown.flags.c_contiguous


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_display_size_matches_exif_transpose(orientation: int) -> None:
    stored = stored_image(orientation)
    width, height = ImageOps.exif_transpose(stored).size
    assert display_size((stored.height, stored.width), orientation) == (height, width)
    assert exif_orientation(stored) == orientation


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_uint32_masks_and_channels(orientation: int) -> None:
    mask = np.arange(5 * 3, dtype=np.uint32).reshape(5, 3)
    back = to_file_frame(mask, orientation)
    assert back.dtype == np.uint32 and back.flags.c_contiguous
    np.testing.assert_array_equal(to_display_frame(back, orientation), mask)
    rgb = np.stack([mask, mask + 100, mask + 200], axis=-1)
    np.testing.assert_array_equal(to_file_frame(rgb, orientation)[..., 1], back + 100)


@pytest.mark.parametrize("value", [None, 0, 9, 65535])
def test_absent_or_invalid_orientation_is_1(value: int | None) -> None:
    assert exif_orientation(stored_image(value)) == 1
    assert exif_orientation(Image.new("L", (2, 2))) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"EXIF orientation must be 1\.\.8, got 0"):
        to_file_frame(np.zeros((2, 2)), 0)
    with pytest.raises(ValueError, match=r"expected a \(height, width\) array"):
        to_file_frame(np.zeros(4), 1)

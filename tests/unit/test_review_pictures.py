"""The review page's pictures (worker.thumbnails): a palette that colour-blind readers can tell
apart class by class, photos turned as browsers show them, the id PNG the hover reads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from worker.thumbnails import PALETTE, draw_overlay, id_png, load_photo

# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB
_SIMULATIONS = {
    "normal vision": np.eye(3),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}  # fmt: skip


def _lab(hex_rgb: str, simulation: np.ndarray) -> np.ndarray:
    srgb = np.array([int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(simulation @ linear, 0, 1)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                       [0.0193, 0.1192, 0.9505]])  # fmt: skip
    xyz = to_xyz @ seen / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


@pytest.mark.parametrize("vision", list(_SIMULATIONS))
def test_neighbouring_classes_stay_apart_for_colour_blind_readers(vision: str) -> None:
    """Classes i and i+1 (and the last and the first, where the palette wraps) differ by a
    CIE76 colour difference of at least 15 under each simulated colour-vision deficiency
    (about 2.3 is just noticeable; 15 tells two legend swatches apart at a glance)."""
    labs = [_lab(colour, _SIMULATIONS[vision]) for colour in PALETTE]
    gaps = [float(np.linalg.norm(labs[i] - labs[(i + 1) % len(labs)])) for i in range(len(labs))]
    worst = int(np.argmin(gaps))
    assert gaps[worst] >= 15, f"{PALETTE[worst]} next to {PALETTE[(worst + 1) % len(PALETTE)]}"


def test_a_photo_is_turned_as_the_browser_shows_it(tmp_path: Path) -> None:
    stored = np.zeros((200, 400, 3), dtype=np.uint8)
    stored[:, :200] = (255, 0, 0)  # left half red, in the stored pixel grid
    stored[:, 200:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: the stored left side on top
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    shown = np.asarray(load_photo(path, (50, 100), exif=True), dtype=int)
    assert shown.shape == (100, 50, 3)
    assert shown[10, 25, 0] > 200 and shown[10, 25, 2] < 60  # top: red
    assert shown[90, 25, 2] > 200 and shown[90, 25, 0] < 60  # bottom: blue
    as_stored = np.asarray(load_photo(path, (100, 50), exif=False), dtype=int)
    assert as_stored[25, 10, 0] > 200  # orientation=file: the stored grid, left red
    grey = np.asarray(load_photo(tmp_path / "missing.jpg", (8, 4), exif=True))
    assert grey.shape == (4, 8, 3) and (grey == 90).all()


def test_the_id_png_holds_instance_ids_in_rgb() -> None:
    mask = np.array([[1, 2], [70_000, 255]], dtype=np.uint32)
    decoded = np.asarray(Image.open(io.BytesIO(id_png(mask))).convert("RGB")).astype(np.uint32)
    ids = decoded[..., 0] << 16 | decoded[..., 1] << 8 | decoded[..., 2]
    assert ids.tolist() == mask.tolist()


def test_background_shows_the_photo_and_segments_are_outlined() -> None:
    photo = Image.new("RGB", (6, 6), (10, 20, 30))
    mask = np.ones((6, 6), dtype=np.uint32)
    mask[2:4, 2:4] = 2
    drawn = np.asarray(draw_overlay(photo, mask, {1: 5, 2: 0}, background_id=5), dtype=int)
    assert drawn[0, 0].tolist() == [10, 20, 30]  # background: the photo itself
    assert drawn[2, 2].tolist() == [255, 255, 255]  # the segment's edge: white outline
    assert drawn[1, 2].tolist() == [255, 255, 255]  # and the background's side of it

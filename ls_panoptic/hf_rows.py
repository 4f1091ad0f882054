"""One ``--format hf`` row's encoded parts, without pyarrow (a worker process of
``convert --jobs N`` builds them; :mod:`ls_panoptic.hf_dataset` writes them to Parquet).

The annotation PNG (RGB: R class id, G instance id, B zero) is streamed 64 rows at a time
(:mod:`ls_panoptic.png`), from an 8-bit copy of the ids: no 36 MB RGB array, no 12 MB class
plane. Each id's pixels (the card's class shares) are counted in the same pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ImageError
from .images import ImageInfo
from .model import Entry, Orientation
from .png import rgb_png
from .segments import displayed_photo

__all__ = ["MAX_CHANNEL_ID", "Encoded", "HFEncoder", "annotation_png"]

MAX_CHANNEL_ID = 255
_EXACT = 2**24 - 1  # float32 histogram counts are exact up to here


def annotation_png(
    ids: npt.NDArray[np.uint8], lut: npt.NDArray[np.uint8]
) -> tuple[bytes, list[int]]:
    """The RGB PNG of instance ids ``ids`` (``(height, width)``): R ``lut[id]`` (the class),
    G the id, B zero (:func:`~ls_panoptic.png.rgb_png`). And the pixels of each id
    ``0..255``, counted on the way (``np.bincount`` of the whole map made a 96 MB ``intp``
    copy of a 12 MP one)."""
    height, width = ids.shape
    counts = np.zeros(256, dtype=np.int64)

    def fill(top: int, pixels: npt.NDArray[np.uint8]) -> None:
        rows = ids[top : top + len(pixels)]
        pixels[:, :, 0] = cv2.LUT(rows, lut)
        pixels[:, :, 1] = rows
        counts[:] += cv2.calcHist([rows], [0], None, [256], [0, 256]).reshape(-1).astype(np.int64)

    png = rgb_png(height, width, fill, rows=max(1, min(64, _EXACT // width)))
    return png, counts.tolist()


@dataclass(frozen=True)
class Encoded:
    """One row's encoded parts (:class:`HFEncoder`)."""

    photo: bytes
    photo_name: str
    png: bytes
    png_name: str
    pixels: dict[int, int]  # class id -> pixels, classes in inst2class order


@dataclass(frozen=True)
class HFEncoder:
    """What the hf writer does per entry without its state (a worker process runs it): the
    checks, the photo, the annotation PNG and the class shares."""

    orientation: Orientation

    def check(
        self, entry: Entry, image: ImageInfo | None
    ) -> tuple[tuple[bytes, str], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The photo and its suffix, an 8-bit copy of the ids (the mask is reused by the next
        conversion) and the class of each id (a 256-entry table).

        Raises:
            ImageError: no photo, an unreadable one, or an instance id above 255.
        """
        if image is None:
            raise ImageError(
                "--format hf needs the photo, and it is not among the images given (--images)"
            )
        top = max(entry.inst2class)
        if top > MAX_CHANNEL_ID:
            raise ImageError(
                f"instance id {top} does not fit the 8-bit instance channel of --format hf's "
                f"annotation PNG (ids 1..{MAX_CHANNEL_ID}); write --format coco-panoptic or "
                "pickle, which have no such limit"
            )
        photo = displayed_photo(image, self.orientation)
        ids = entry.panoptic_mask.astype(np.uint8)
        lut = np.zeros(256, dtype=np.uint8)
        lut[list(entry.inst2class)] = list(entry.inst2class.values())
        return photo, ids, lut

    def encode(
        self,
        entry: Entry,
        photo: tuple[bytes, str],
        ids: npt.NDArray[np.uint8],
        lut: npt.NDArray[np.uint8],
    ) -> Encoded:
        """The row's parts from :meth:`check`'s results."""
        png, counts = annotation_png(ids, lut)
        pixels = dict.fromkeys(entry.inst2class.values(), 0)
        for seg, class_id in entry.inst2class.items():
            pixels[class_id] += counts[seg]
        stem = PurePosixPath(entry.key).stem
        return Encoded(photo[0], stem + photo[1], png, stem + ".png", pixels)

    def __call__(self, entry: Entry, image: ImageInfo | None) -> Encoded:
        return self.encode(entry, *self.check(entry, image))

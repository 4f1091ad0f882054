"""COCO panoptic output (``convert --format coco-panoptic``): what panopticapi, detectron2,
the original Mask2Former code and Datumaro read, with the pickle's masks bit for bit.

Layout of the output folder::

    annotations/panoptic_<split>.json       one per split (``train``, and ``--split`` names)
    annotations/panoptic_<split>/<stem>.png  one segment-id PNG per image
    images/<split>/<image key>              the photo, in the mask's frame (``--copy-images``;
                                            without it the folders are there, empty)
    ls-panoptic.meta.json                   the sidecar (id2label, provenance, failures)

``panoptic_<split>.json``::

    images        [{"id", "file_name": image key, "height", "width"}]
    annotations   [{"image_id", "file_name": "<stem>.png", "segments_info": [
                      {"id": instance id, "category_id": class id + 1, "area",
                       "bbox": [x, y, width, height], "iscrowd": 0}]}]
    categories    [{"id": class id + 1, "name": label, "supercategory": label,
                    "isthing": 0 for --stuff classes and background else 1,
                    "color": [r, g, b]}]
    ls_panoptic   {"category_id": the rule below, "format": "ls-panoptic/coco-panoptic/1"}

Segment PNG: RGB, ``segment id = R + 256 G + 256^2 B``; the segment ids are the pickle's
instance ids unchanged (``1..N``), so the mask reads back bit for bit.

Category ids: panopticapi and Datumaro take category id 0 (and segment id 0) as void, and our
class ids start at 0, so **category_id = class id + 1** (``leaf, stem, tomato, background`` ->
categories 1..4). :func:`read_coco_panoptic` subtracts the 1 again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ImageError, Remedy, SnapshotError
from .images import ImageInfo
from .model import Entry, Orientation
from .png import rgb_png
from .segments import displayed_photo, segment_stats
from .splits import DEFAULT_SPLIT, split_of
from .writers import FolderWriter, write_file

__all__ = [
    "CATEGORY_ID_RULE",
    "CocoPanopticWriter",
    "categories",
    "decode_segment_png",
    "encode_segment_png",
    "narrowed",
    "read_coco_panoptic",
]

FORMAT = "ls-panoptic/coco-panoptic/1"
CATEGORY_ID_RULE = "category_id = class id + 1 (0 is void to panopticapi and Datumaro)"


def narrowed(mask: npt.NDArray[Any], top: int) -> npt.NDArray[Any]:
    """A copy of ``mask`` (ids up to ``top``) in the narrowest unsigned dtype that holds them:
    what the segment PNG needs of a mask the next conversion will reuse (12 MB at 12 MP for
    up to 255 segments, where a ``uint32`` copy is 48 MB)."""
    dtype = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32
    return mask.astype(dtype)


def encode_segment_png(mask: npt.NDArray[Any]) -> bytes:
    """``(height, width)`` ids (below 2^24, any unsigned dtype) -> PNG bytes, RGB with
    id = R + 256 G + 256^2 B, streamed (:func:`~ls_panoptic.png.rgb_png`)."""
    ids = np.ascontiguousarray(mask, dtype=mask.dtype.newbyteorder("<"))
    height, width = ids.shape
    size = min(3, ids.dtype.itemsize)  # little-endian: the low bytes are R, G, B

    def fill(top: int, pixels: npt.NDArray[np.uint8]) -> None:
        rows = ids[top : top + len(pixels)]
        pixels[:, :, :size] = rows.view(np.uint8).reshape(len(rows), width, -1)[:, :, :size]

    return rgb_png(height, width, fill)


def decode_segment_png(data: bytes) -> npt.NDArray[np.uint32]:
    """The inverse of :func:`encode_segment_png`: ``uint32`` ``(height, width)``."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError("not an RGB segment PNG")
    rgba = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA))
    ids = rgba.view("<u4").reshape(bgr.shape[:2])
    ids &= 0xFFFFFF  # cvtColor sets alpha to 255
    return ids.astype(np.uint32, copy=False)


def _color(class_id: int) -> list[int]:
    """A fixed, well-spread colour per class (golden-ratio hues)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    bgr = cv2.cvtColor(np.array([[[hue, 200, 230]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return [int(bgr[2]), int(bgr[1]), int(bgr[0])]


def categories(id2label: Mapping[int, str], stuff_ids: frozenset[int]) -> list[dict[str, Any]]:
    """COCO categories of a label set: ids shifted by one; stuff and background not things."""
    return [
        {
            "id": class_id + 1,
            "name": label,
            "supercategory": label,
            "isthing": 0 if class_id in stuff_ids else 1,
            "color": _color(class_id),
        }
        for class_id, label in sorted(id2label.items())
    ]


def _segments(entry: Entry) -> list[dict[str, Any]]:
    """The entry's ``segments_info``, in inst2class order (so it reads back as the pickle's)."""
    stats = segment_stats(entry.panoptic_mask)
    at = {int(seg): n for n, seg in enumerate(stats.ids)}
    return [
        {
            "id": seg,
            "category_id": class_id + 1,
            "area": int(stats.areas[at[seg]]),
            "bbox": [int(v) for v in stats.boxes[at[seg]]],
            "iscrowd": 0,
        }
        for seg, class_id in entry.inst2class.items()
    ]


@dataclass(frozen=True)
class _CocoEncoder:
    """What :class:`CocoPanopticWriter` does per entry without its state (a worker process
    runs it): the photo to copy, ``segments_info`` and the segment PNG."""

    copy_images: bool
    orientation: Orientation

    def photo(self, image: ImageInfo | None) -> bytes | None:
        """The photo's bytes to copy (``None`` without ``--copy-images``); read here, so that
        an unreadable photo fails its own image only."""
        if not self.copy_images:
            return None
        if image is None:
            raise ImageError("--copy-images needs the image; it is not among the images given")
        return displayed_photo(image, self.orientation)[0]

    def __call__(
        self, entry: Entry, image: ImageInfo | None
    ) -> tuple[bytes | None, list[dict[str, Any]], bytes]:
        ids = narrowed(entry.panoptic_mask, max(entry.inst2class))  # 4 ms, then 4x less to lay out
        return self.photo(image), _segments(entry), encode_segment_png(ids)


class CocoPanopticWriter(FolderWriter):
    """Writes the folder described above; an :class:`~ls_panoptic.writers.EntryWriter`.

    Args:
        folder: the output folder (replaced on commit when it is an earlier output).
        id2label: class id -> label, background included.
        stuff_ids: class ids that are stuff (background among them).
        splits: ``{name: fraction}`` besides ``train`` (:func:`~ls_panoptic.writers.parse_splits`).
        seed: the split seed.
        copy_images: also write each photo under ``images/<split>/``.
        orientation: the conversion's, for the photo's frame.
    """

    def __init__(
        self,
        folder: Path,
        id2label: Mapping[int, str],
        stuff_ids: frozenset[int],
        *,
        splits: Mapping[str, float] | None = None,
        seed: int = 0,
        copy_images: bool = False,
        orientation: Orientation = "display",
    ) -> None:
        super().__init__(folder)
        self._categories = categories(id2label, stuff_ids)
        self._splits, self._seed = dict(splits or {}), seed
        self._copy_images, self._orientation = copy_images, orientation
        self._json: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._masks: dict[str, str] = {}  # mask path -> image key, to refuse a clash

    def add(self, entry: Entry, image: ImageInfo | None) -> None:
        photo = _CocoEncoder(self._copy_images, self._orientation).photo(image)
        segments = _segments(entry)
        ids = narrowed(entry.panoptic_mask, max(entry.inst2class))  # the mask is reused
        self._add(entry, segments, lambda: encode_segment_png(ids), photo)

    def encoder(self) -> _CocoEncoder:
        return _CocoEncoder(self._copy_images, self._orientation)

    def add_encoded(self, entry: Entry, image: ImageInfo | None, encoded: Any) -> None:
        photo, segments, png = encoded
        self._add(entry, segments, lambda: png, photo)

    def _add(
        self,
        entry: Entry,
        segments: list[dict[str, Any]],
        png: Callable[[], bytes],
        photo: bytes | None,
    ) -> None:
        split = split_of(entry.key, self._splits, self._seed)
        mask_name = PurePosixPath(entry.key).with_suffix(".png").as_posix()
        taken = self._masks.get(f"{split}/{mask_name}")
        if taken is not None:
            raise ImageError(
                f"its mask file {mask_name} is the mask file of image {taken!r} too "
                "(COCO names masks <image stem>.png)",
                remedy=Remedy.KEY,
            )
        self._masks[f"{split}/{mask_name}"] = entry.key
        self._record(split, entry, mask_name, segments)
        self._work.submit(lambda: self._write_files(split, entry.key, mask_name, png(), photo))

    def _write_files(
        self, split: str, key: str, mask_name: str, png: bytes, photo: bytes | None
    ) -> None:
        masks = self._root / "annotations" / f"panoptic_{split}"
        write_file(masks / mask_name, png)
        if photo is not None:
            write_file(self._root / "images" / split / key, photo)

    def _record(
        self, split: str, entry: Entry, mask_name: str, segments: list[dict[str, Any]]
    ) -> None:
        doc = self._json.setdefault(split, {"images": [], "annotations": []})
        image_id = len(doc["images"]) + 1
        height, width = entry.panoptic_mask.shape
        doc["images"].append(
            {"id": image_id, "file_name": entry.key, "height": height, "width": width}
        )
        doc["annotations"].append(
            {"image_id": image_id, "file_name": mask_name, "segments_info": segments}
        )

    def _finish(self) -> None:
        if not self._json:  # no image: an empty train split, still a valid dataset
            self._json[DEFAULT_SPLIT] = {"images": [], "annotations": []}
        for split, doc in self._json.items():
            body = {
                **doc,
                "categories": self._categories,
                "ls_panoptic": {"format": FORMAT, "category_id": CATEGORY_ID_RULE},
            }
            write_file(
                self._root / "annotations" / f"panoptic_{split}.json",
                json.dumps(body, separators=(",", ":")).encode(),
            )
            (self._root / "annotations" / f"panoptic_{split}").mkdir(exist_ok=True)
            # Datumaro's importer wants the folder even when the photos are not copied
            (self._root / "images" / split).mkdir(parents=True, exist_ok=True)


def read_coco_panoptic(
    folder: Path,
) -> tuple[dict[int, str], Iterator[tuple[str, dict[str, Any]]]]:
    """``id2label`` and the entries of a COCO panoptic folder, read one at a time.

    Entries are ``(image key, {"panoptic_mask", "inst2class"})`` as in the pickle, split by
    split (sorted by name), in the order written.

    Raises:
        SnapshotError: no ``annotations/panoptic_*.json`` in ``folder``.
    """
    docs = sorted((Path(folder) / "annotations").glob("panoptic_*.json"))
    if not docs:
        raise SnapshotError(f"{folder}: no annotations/panoptic_*.json (not COCO panoptic)")
    with docs[0].open("rb") as file:
        cats = json.load(file)["categories"]
    id2label = {int(c["id"]) - 1: str(c["name"]) for c in cats}
    return id2label, _coco_entries(docs)


def _coco_entries(docs: list[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc_path in docs:
        with doc_path.open("rb") as file:
            doc = json.load(file)
        names = {img["id"]: img["file_name"] for img in doc["images"]}
        mask_dir = doc_path.with_suffix("")
        for ann in doc["annotations"]:
            mask = decode_segment_png((mask_dir / ann["file_name"]).read_bytes())
            inst2class = {int(s["id"]): int(s["category_id"]) - 1 for s in ann["segments_info"]}
            yield names[ann["image_id"]], {"panoptic_mask": mask, "inst2class": inst2class}

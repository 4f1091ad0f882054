"""Plain data types shared by the core modules.

Shapes are written ``(height, width)``; images are indexed ``[row, col]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy.typing as npt

__all__ = [
    "AREA_KINDS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_REGIONS",
    "Annotation",
    "ConvertOptions",
    "Entry",
    "Region",
    "RegionKind",
    "Task",
]

RegionKind = Literal["brush", "bitmask", "polygon", "rectangle", "ellipse"]
AREA_KINDS: tuple[RegionKind, ...] = ("brush", "bitmask", "polygon", "rectangle", "ellipse")

Overlap = Literal["last", "first", "smallest"]
Orientation = Literal["display", "file"]
KeyScheme = Literal["name", "path", "task"]

#: largest image converted (height x width): its mask alone takes 4 bytes a pixel (400 MB here)
DEFAULT_MAX_PIXELS = 100_000_000
#: most area regions one annotation may hold (Label Studio's UI makes tens to hundreds)
DEFAULT_MAX_REGIONS = 10_000


@dataclass(frozen=True)
class Region:
    """One area region of an annotation, geometry and label joined by region id.

    Attributes:
        id: Label Studio region id (``"#<order>"`` when the result item had none, as in JSON_MIN).
        kind: geometry kind.
        label: the first label of the region.
        order: position of the region's first item in ``result``: the painter's order.
        height, width: the pixel grid it is drawn on: its ``original_height`` /
            ``original_width`` (display frame), else the size its annotation or image gives.
        value: the geometry fields of ``value`` (percent of width/height, ``rle``, data URL, ...).
        image_rotation: Label Studio's ``image_rotation`` in degrees: how the editor's view was
            turned when the annotation was saved. Coordinates are in the unrotated image
            whatever it says, so it is recorded, never applied.
        extra_labels: labels after the first (a region with several labels uses the first).
    """

    id: str
    kind: RegionKind
    label: str
    order: int
    height: int
    width: int
    value: Mapping[str, Any]
    image_rotation: float = 0.0
    extra_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Annotation:
    """One annotation (or prediction) of a task, as found in an export, webhook or the SDK."""

    id: int | None
    result: list[dict[str, Any]]
    updated_at: str = ""
    created_at: str = ""
    completed_by: int | None = None
    ground_truth: bool = False
    was_cancelled: bool = False
    is_prediction: bool = False


@dataclass(frozen=True)
class Task:
    """One Label Studio task: its id, its data and its annotations.

    Attributes:
        prediction_ids: predictions listed by id only (Label Studio's JSON export does that
            whenever a project has predictions): nothing to convert, counted in reports.
        problem: why the task as exported cannot be read (it then fails alone, naming this);
            ``None`` for a readable task.
    """

    id: int | None
    data: Mapping[str, Any]
    annotations: list[Annotation] = field(default_factory=list)
    predictions: list[Annotation] = field(default_factory=list)
    prediction_ids: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class ConvertOptions:
    """Every knob of the conversion; the CLI and the service build one of these.

    Attributes:
        overlap: which region is on top where regions overlap: ``last`` in ``result`` order
            (what the annotator saw), ``first``, or ``smallest`` (smaller area on top).
        stuff: labels whose regions merge into one segment per image (background always does).
        brush_threshold: alpha at or above which a brush/bitmask pixel counts (anti-aliasing).
        unknown_labels: ``error`` fails the image, ``skip`` drops the region with a warning.
        annotation: ``latest``, ``ground-truth`` or ``annotator:<user id>``.
        use_predictions: fall back to the newest prediction when a task has no usable annotation.
        orientation: ``display`` (as the browser shows it, ``exif_transpose``) or ``file``
            (mask rotated back onto the stored pixel grid).
        key: how an image key is derived: file ``name``, relative ``path``, or ``task`` id.
        max_pixels: largest image (height x width) converted; a larger one fails before any
            image-sized buffer is allocated.
        max_regions: most area regions an annotation may hold; more fail before any region
            is rasterised.
        time_limit: seconds one image's conversion may take (``None``: no limit); a slower one
            fails with an ``ImageError``. Checked on a monotonic clock between regions, while
            a long polygon is swept and before composing, so it works anywhere (no signals, no
            threads); a step under way (decoding one brush or bitmask, composing) finishes
            first.

    Raises:
        ValueError: ``time_limit`` is not ``None`` or a finite number of seconds above 0.
    """

    overlap: Overlap = "last"
    stuff: frozenset[str] = frozenset()
    brush_threshold: int = 128
    unknown_labels: Literal["error", "skip"] = "error"
    annotation: str = "latest"
    use_predictions: bool = False
    orientation: Orientation = "display"
    key: KeyScheme = "name"
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_regions: int = DEFAULT_MAX_REGIONS
    time_limit: float | None = None

    def __post_init__(self) -> None:
        limit = self.time_limit
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, (int, float))
            or not math.isfinite(limit)
            or limit <= 0
        ):
            wanted = "None (no limit) or a finite number of seconds above 0"
            raise ValueError(f"time_limit must be {wanted}, not {limit!r}")


@dataclass
class Entry:
    """One converted image: the pickled part and its provenance.

    Attributes:
        key: the image key (the snapshot dict key).
        panoptic_mask: ``uint32`` ``(height, width)``, C-contiguous, ids ``1..N``.
        inst2class: ``{instance_id: class_id}`` with plain ``int`` keys and values.
        meta: provenance for the sidecar JSON (task, annotation, updated_at, orientation,
            counts, warnings); JSON-serialisable.
    """

    key: str
    panoptic_mask: npt.NDArray[Any]
    inst2class: dict[int, int]
    meta: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The exact per-image value of the output contract."""
        return {"panoptic_mask": self.panoptic_mask, "inst2class": self.inst2class}

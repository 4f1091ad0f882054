"""The exception tree of the conversion core.

::

    PanopticError                 anything the core refuses, with a message meant for people
    ├── ExportError               the export file itself is unreadable or not a Label Studio export
    ├── LabelConfigError          label config XML or id2label mapping file is unusable
    ├── ImageSourceError          the image folder or image list file (--images) is unusable
    ├── SnapshotError             a snapshot cannot be written
    └── ImageError                one image (task) cannot be converted; the others can
        ├── RegionError           one region of that image is broken
        ├── UnknownLabelError     a region carries a label outside the label set
        └── KeyCollisionError     two tasks map to the same image key

``RLEError`` (raised by :mod:`ls_panoptic.rle`) and ``GeometryError`` (raised by
:mod:`ls_panoptic.rasterize`) carry only the reason; :mod:`ls_panoptic.convert` wraps them into a
``RegionError`` that names the task and region.
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "GeometryError",
    "ImageError",
    "ImageSourceError",
    "KeyCollisionError",
    "LabelConfigError",
    "PanopticError",
    "RLEError",
    "RegionError",
    "SnapshotError",
    "UnknownLabelError",
]


class PanopticError(Exception):
    """Base class: every error the core raises on bad input."""


class ExportError(PanopticError):
    """The export as a whole cannot be read."""


class LabelConfigError(PanopticError):
    """The label config or the id2label mapping is unusable."""


class ImageSourceError(PanopticError):
    """The image folder or image list file is unusable (missing, empty, lists missing files)."""


class SnapshotError(PanopticError):
    """A snapshot could not be written."""


class RLEError(ValueError):
    """A brush RLE is corrupt or does not fit the image size (reason only)."""


class GeometryError(ValueError):
    """A region's geometry is unusable (reason only)."""


class ImageError(PanopticError):
    """One image cannot be converted.

    Attributes:
        task_id: Label Studio task id (``None`` when unknown).
        reason: what is wrong, without the task prefix.
    """

    def __init__(self, task_id: int | None, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id}: {reason}" if task_id is not None else reason)


class RegionError(ImageError):
    """One region is broken; the message names task, region id and reason."""

    def __init__(self, task_id: int | None, region_id: str, reason: str) -> None:
        self.region_id = region_id
        super().__init__(task_id, f"region {region_id}: {reason}")
        self.reason = reason


class UnknownLabelError(ImageError):
    """A region's label is not in the label set."""

    def __init__(self, task_id: int | None, region_id: str, label: str, known: list[str]) -> None:
        self.region_id = region_id
        self.label = label
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        alike = [k for k in known if k.casefold() == label.casefold()]
        hint = f" (it has {alike[0]!r}: the letter case differs)" if alike else ""
        super().__init__(
            task_id,
            f"region {region_id}: label {label!r} is not in the label set ({shown}){hint}; "
            "add it to the label config / id2label file, or pass --unknown-labels skip",
        )


class KeyCollisionError(ImageError):
    """Two tasks produce the same image key."""

    def __init__(self, task_id: int | None, key: str, other_task_id: int | None) -> None:
        self.key = key
        self.other_task_id = other_task_id
        super().__init__(
            task_id,
            f"image key {key!r} is also produced by task {other_task_id}; "
            "use --key path or --key task to tell them apart",
        )

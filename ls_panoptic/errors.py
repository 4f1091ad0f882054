"""The exception tree of the conversion core, and what its messages may say.

::

    PanopticError                 anything the core refuses: a reason, maybe a remedy
    ├── ExportError               the export file itself is unreadable or not a Label Studio export
    ├── LabelConfigError          label config XML or id2label mapping file is unusable
    ├── ImageSourceError          the image folder or image list file is unusable
    ├── SnapshotError             a snapshot cannot be written
    └── ImageError                one image (task) cannot be converted; the others can
        ├── RegionError           one region of that image is broken
        ├── UnknownLabelError     a region carries a label outside the label set
        ├── LimitError            the image exceeds a limit of the conversion (size, regions, time)
        └── KeyCollisionError     two tasks map to the same image key

``RLEError`` (raised by :mod:`ls_panoptic.rle`) and ``GeometryError`` (raised by
:mod:`ls_panoptic.rasterize`) carry only the reason; :mod:`ls_panoptic.convert` wraps them into a
``RegionError`` that names the region.

Messages. An error says what is wrong (``reason``), in words that hold for every front end:
never a command-line option, never an environment variable. What a user could change to let
the failure through is a structured field, ``remedy`` (a :class:`Remedy`: the input or setting
at stake), beside the failure's own fields (``limit``, ``label``, ``known``, ``key``, ...).
Each front end words remedies for its users in one place: ``cli/report.py`` names the
``convert`` options (``--time-limit``, ``--images``, ...), ``worker/remedies.py`` the
service's ``LS_PANOPTIC_*`` variables.

Task ids. Helpers raise without one; the task boundary (:func:`ls_panoptic.convert.convert_task`,
the batch, the worker's sync) attaches it once (:func:`naming_task`, :meth:`ImageError.in_task`).
``str()`` of an ``ImageError`` is then ``task <id>: region <id>: <reason>``.

Sidecars. A snapshot's sidecar lists each failed task with that text
(:func:`ls_panoptic.sidecar.failure_message`) and without a remedy: live = batch, so one failure
reads the same whether ``convert`` or the service wrote the sidecar, and a remedy worded for one
front end would be wrong for the other. The CLI prints the sidecar's text followed by its
remedy; the service logs it with its own.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = [
    "ExportError",
    "GeometryError",
    "ImageError",
    "ImageSourceError",
    "KeyCollisionError",
    "LabelConfigError",
    "LimitError",
    "PanopticError",
    "RLEError",
    "RegionError",
    "Remedy",
    "SnapshotError",
    "UnknownLabelError",
    "naming_task",
]


class Remedy(enum.Enum):
    """What a user could change to let a failure through; the value names the input or the
    :class:`~ls_panoptic.model.ConvertOptions` field at stake."""

    IMAGE = "image"  #: give the image: its size stands in for the one the annotation lacks
    TIME_LIMIT = "time_limit"  #: raise the time limit per image, or split the image
    MAX_REGIONS = "max_regions"  #: raise the region limit, if the regions are real
    MAX_PIXELS = "max_pixels"  #: raise the pixel limit, if the size is real
    UNKNOWN_LABELS = "unknown_labels"  #: add the label to the label set, or skip unknown labels
    KEY = "key"  #: key images by relative path or task id to tell them apart
    PREDICTIONS = "use_predictions"  #: convert predictions where a task has no annotation


class PanopticError(Exception):
    """Base class: every error the core raises on bad input.

    Attributes:
        remedy: what a user could change to let it through; ``None`` when the input itself
            must change (see the module docstring).
    """

    remedy: Remedy | None = None

    def __init__(self, reason: str, *, remedy: Remedy | None = None) -> None:
        super().__init__(reason)
        if remedy is not None:
            self.remedy = remedy


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
        reason: what is wrong, without task, region or remedy.
        task_id: Label Studio task id, attached at the task boundary (``None`` when unknown).
        region_id: the region at fault (``None``: the image as a whole).
    """

    def __init__(
        self,
        reason: str,
        *,
        task_id: int | None = None,
        region_id: str | None = None,
        remedy: Remedy | None = None,
    ) -> None:
        super().__init__(reason, remedy=remedy)
        self.reason = reason
        self.task_id = task_id
        self.region_id = region_id

    def in_task(self, task_id: int | None) -> ImageError:
        """Name ``task_id`` as this image's task unless one is named already; returns ``self``."""
        if self.task_id is None:
            self.task_id = task_id
        return self

    def __str__(self) -> str:
        where = [f"task {self.task_id}"] if self.task_id is not None else []
        if self.region_id is not None:
            where.append(f"region {self.region_id}")
        return ": ".join([*where, self.reason])


@contextmanager
def naming_task(task_id: int | None) -> Iterator[None]:
    """The task boundary: every ``ImageError`` leaving the block names ``task_id``."""
    try:
        yield
    except ImageError as exc:
        exc.in_task(task_id)
        raise


class RegionError(ImageError):
    """One region is broken."""

    def __init__(self, region_id: str, reason: str, *, remedy: Remedy | None = None) -> None:
        super().__init__(reason, region_id=region_id, remedy=remedy)


class UnknownLabelError(ImageError):
    """A region's label is not in the label set (``remedy``: :attr:`Remedy.UNKNOWN_LABELS`).

    Attributes:
        label: the region's label.
        known: the labels of the label set, in class id order.
    """

    def __init__(self, region_id: str, label: str, known: Sequence[str]) -> None:
        self.label = label
        self.known = tuple(known)
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        alike = [k for k in known if k.casefold() == label.casefold()]
        hint = f" (it has {alike[0]!r}: the letter case differs)" if alike else ""
        reason = f"label {label!r} is not in the label set ({shown}){hint}"
        super().__init__(reason, region_id=region_id, remedy=Remedy.UNKNOWN_LABELS)


class LimitError(ImageError):
    """The image exceeds a limit of the conversion; ``remedy`` names the setting
    (:attr:`Remedy.TIME_LIMIT`, :attr:`Remedy.MAX_REGIONS` or :attr:`Remedy.MAX_PIXELS`).

    Attributes:
        limit: the setting's value that was exceeded (seconds, regions or pixels).
    """

    def __init__(self, reason: str, *, remedy: Remedy, limit: float) -> None:
        super().__init__(reason, remedy=remedy)
        self.limit = limit


class KeyCollisionError(ImageError):
    """Tasks produce the same image key (``remedy``: :attr:`Remedy.KEY`).

    Attributes:
        key: the image key.
        other_task_ids: the other tasks that produce it.
    """

    def __init__(self, task_id: int | None, key: str, other_task_ids: Sequence[int | None]) -> None:
        self.key = key
        self.other_task_ids = tuple(other_task_ids)
        named = ", ".join(str(t) for t in self.other_task_ids)
        reason = f"image key {key!r} is also produced by task {named}; a snapshot holds one per key"
        super().__init__(reason, task_id=task_id, remedy=Remedy.KEY)

"""One task -> one :class:`~ls_panoptic.model.Entry`: the conversion the CLI and worker share.

Steps: pick the annotation (DESIGN 3.4), parse its regions, agree on one size, check it
against the image as displayed (EXIF), map labels to class ids, rasterise, compose, and, for
``orientation="file"``, rotate the mask back onto the stored pixel grid.

:func:`convert_task` does it all at once. :class:`Conversion` does it in two steps, for a
caller that must know first whether the image is needed (:meth:`Conversion.needs_image`): the
annotation is selected and parsed once, and the conversion reuses both. Errors are raised
without a task id and name the task once, at this boundary (:mod:`ls_panoptic.errors`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

from .compose import Composition, Layer, Scratch, compose
from .errors import (
    GeometryError,
    ImageError,
    LimitError,
    RegionError,
    Remedy,
    RLEError,
    UnknownLabelError,
    naming_task,
)
from .images import ImageInfo
from .labels import LabelSet
from .model import Annotation, ConvertOptions, Entry, Region, Task
from .orientation import to_file_frame
from .parse import ParsedResult, read_result
from .provenance import note, provenance, region_notes
from .rasterize import shape_for
from .selection import select_annotation

__all__ = ["MAX_PIL_SAFE_ID", "Conversion", "convert_task"]

MAX_PIL_SAFE_ID = 255  # the processor's PIL resize path rejects ids above this


class _Deadline:
    """``options.time_limit`` for one task, on a monotonic clock: no signals, no threads, so it
    works in an RQ work-horse, a thread or the batch CLI alike."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def check(self, where: str) -> None:
        """Raise ``LimitError`` once the limit has passed; ``where``: ``"at region p1"``..."""
        if self.seconds is not None and self.at is not None and time.monotonic() > self.at:
            raise LimitError(
                f"conversion took longer than the {self.seconds:g} s limit (stopped {where})",
                remedy=Remedy.TIME_LIMIT,
                limit=self.seconds,
            )

    def checkpoint(self, where: str) -> Callable[[], None] | None:
        """``check(where)`` as a callback for long loops; ``None`` when there is no limit."""
        return None if self.at is None else partial(self.check, where)


@dataclass
class _Context:
    task: Task
    labels: LabelSet
    options: ConvertOptions
    warnings: list[str]
    deadline: _Deadline
    skipped_labels: dict[str, list[str]] = field(default_factory=dict)


def _image_size(parsed: ParsedResult, image: ImageInfo | None) -> tuple[int, int]:
    """The mask's ``(height, width)``: the image's as displayed, which must match the size the
    annotation declares; without the image, the declared size."""
    if image is not None:
        displayed = (image.height, image.width)
        if parsed.declared and parsed.size != displayed:
            h, w = parsed.size or displayed
            raise ImageError(
                f"regions are {w}x{h} (width x height) but {image.path.name} is displayed as "
                f"{image.width}x{image.height} (EXIF orientation {image.orientation}); "
                "is this the image the task was annotated on?",
            )
        return displayed
    if parsed.size is None:
        raise ImageError(
            "no region or other result of the annotation gives the image size "
            "(original_width/original_height)",
            remedy=Remedy.IMAGE,
        )
    return parsed.size


def _check_regions(regions: int, options: ConvertOptions) -> None:
    """Refuse absurd region counts before any region is rasterised."""
    if regions > options.max_regions:
        raise LimitError(
            f"{regions} regions, more than the limit of {options.max_regions} (max_regions)",
            remedy=Remedy.MAX_REGIONS,
            limit=options.max_regions,
        )


def _check_pixels(height: int, width: int, options: ConvertOptions) -> None:
    """Refuse absurd image sizes before anything image-sized is allocated."""
    if height * width > options.max_pixels:
        raise LimitError(
            f"image size {_shown(width)}x{_shown(height)} (width x height) is more than the "
            f"limit of {options.max_pixels} pixels (max_pixels)",
            remedy=Remedy.MAX_PIXELS,
            limit=options.max_pixels,
        )


def _shown(number: int) -> str:
    """A size for messages: a corrupt one can have hundreds of digits."""
    text = str(number)
    return text if len(text) <= 12 else f"{text[:3]}...({len(text)} digits)"


def _class_id(region: Region, ctx: _Context) -> int | None:
    class_id = ctx.labels.class_id(region.label)
    if class_id is not None:
        return class_id
    if ctx.options.unknown_labels == "skip":
        ctx.skipped_labels.setdefault(region.label, []).append(region.id)
        return None
    raise UnknownLabelError(region.id, region.label, ctx.labels.labels)


def _layers(regions: Sequence[Region], ctx: _Context) -> list[Layer]:
    layers = []
    for region in regions:
        where = f"at region {region.id}"
        ctx.deadline.check(where)
        if not math.isfinite(region.image_rotation):
            raise RegionError(region.id, "image_rotation is not a number")
        class_id = _class_id(region, ctx)
        if class_id is None:
            continue
        try:
            shape = shape_for(
                region,
                brush_threshold=ctx.options.brush_threshold,
                checkpoint=ctx.deadline.checkpoint(where),
            )
        except (GeometryError, RLEError) as exc:
            raise RegionError(region.id, f"{region.kind}: {exc}") from exc
        layers.append(Layer(region.id, class_id, region.order, shape))
    return layers


def _check_readable(task: Task) -> None:
    if task.problem is not None:
        raise ImageError(task.problem, task_id=task.id)


@dataclass
class Conversion:
    """The conversion of one task's selected ``annotation`` (made by :meth:`of`, or by
    :meth:`of_annotation` for an annotation chosen by the caller): its result
    is parsed once, on first need, for :meth:`needs_image` and :meth:`run` alike."""

    task: Task
    annotation: Annotation
    options: ConvertOptions

    @classmethod
    def of(cls, task: Task, options: ConvertOptions) -> Conversion | None:
        """The conversion of ``task``; ``None`` when it has no usable annotation (it is left out).

        Raises:
            ImageError: the task as exported cannot be read (``task.problem``).
            ValueError: the annotation policy is unusable.
        """
        _check_readable(task)
        annotation = select_annotation(task, options.annotation, options.use_predictions)
        return None if annotation is None else cls(task, annotation, options)

    @classmethod
    def of_annotation(
        cls, task: Task, annotation: Annotation, options: ConvertOptions
    ) -> Conversion:
        """The conversion of this ``annotation`` (or prediction) of ``task``, whatever
        ``options.annotation`` would select (the agreement converts each one it compares).

        Raises:
            ImageError: the task as exported cannot be read (``task.problem``).
        """
        _check_readable(task)
        return cls(task, annotation, options)

    @cached_property
    def parsed(self) -> ParsedResult:
        """The annotation's result, parsed once, without the image (``read_result``)."""
        with naming_task(self.task.id):
            return read_result(self.annotation.result)

    def needs_image(self) -> bool:
        """Whether the mask depends on the image file: ``orientation="file"`` (its EXIF
        orientation rotates the mask) or no result of the annotation gives the image size.
        Otherwise the mask is the same bytes with or without the image; given, the image
        only checks the size the annotation declares.

        Raises:
            ImageError: the result is malformed (as :meth:`run` would raise).
        """
        return self.options.orientation == "file" or self.parsed.size is None

    def run(
        self,
        key: str,
        labels: LabelSet,
        image: ImageInfo | None = None,
        scratch: Scratch | None = None,
    ) -> Entry:
        """The entry; arguments and errors as for :func:`convert_task`."""
        with naming_task(self.task.id):
            return self._run(key, labels, image, scratch)

    def _run(
        self, key: str, labels: LabelSet, image: ImageInfo | None, scratch: Scratch | None
    ) -> Entry:
        options = self.options
        ctx = _Context(self.task, labels, options, [], _Deadline(options.time_limit))
        image_size = None if image is None else (image.height, image.width)
        parsed = self.parsed.sized(image_size)
        _check_regions(len(parsed.regions), options)
        height, width = _image_size(parsed, image)
        _check_pixels(height, width, options)
        region_notes(parsed, ctx.warnings)
        layers = _layers(parsed.regions, ctx)
        ctx.deadline.check("before composing the mask")
        stuff = frozenset(c for c in map(labels.class_id, options.stuff) if c is not None)
        comp = compose(
            layers,
            height=height,
            width=width,
            background_class=labels.background_id,
            stuff=stuff,
            overlap=options.overlap,
            scratch=scratch,
        )
        return self._entry(key, ctx, parsed, comp, image)

    def _entry(
        self,
        key: str,
        ctx: _Context,
        parsed: ParsedResult,
        comp: Composition,
        image: ImageInfo | None,
    ) -> Entry:
        warnings = ctx.warnings
        note(warnings, comp.dropped, "hidden by others and dropped")
        if len(comp.inst2class) > MAX_PIL_SAFE_ID:
            warnings.append(
                f"{len(comp.inst2class)} instances: ids above {MAX_PIL_SAFE_ID} break "
                "Mask2FormerImageProcessor's PIL resize path (do_resize=False avoids it)"
            )
        for label, ids in ctx.skipped_labels.items():
            note(warnings, ids, f"labelled {label!r} (not in the label set) skipped")
        mask = comp.mask
        if self.options.orientation == "file" and image is not None:
            mask = to_file_frame(mask, image.orientation)
        meta = provenance(self.task.id, self.annotation, self.options, parsed, warnings)
        meta.update(
            height=int(mask.shape[0]),
            width=int(mask.shape[1]),
            instances=len(comp.inst2class),
            dropped_regions=comp.dropped,
            overlapped_pixels=comp.overlapped_pixels,
        )
        return Entry(key=key, panoptic_mask=mask, inst2class=comp.inst2class, meta=meta)


def convert_task(
    task: Task,
    key: str,
    labels: LabelSet,
    options: ConvertOptions,
    image: ImageInfo | None = None,
    scratch: Scratch | None = None,
) -> Entry | None:
    """Convert one task; ``None`` when it has no usable annotation (it is left out).

    Args:
        task: the task with its annotations.
        key: the image key for the entry.
        labels: label set giving class ids (background included).
        options: conversion options.
        image: the image's size and orientation, when the image is available.
        scratch: reusable buffers; the entry's mask then lives in it and is valid until the
            next call with the same scratch (see :class:`~ls_panoptic.compose.Scratch`).

    Raises:
        ImageError: (or a subclass) this image cannot be converted; ``str()`` names the task
            and says why, ``remedy`` what a user could change. Among the reasons
            (:class:`~ls_panoptic.errors.LimitError`): more than ``options.max_regions``
            regions, or more than ``options.max_pixels`` pixels (checked before anything
            image-sized is allocated), or more than ``options.time_limit`` seconds spent
            (checked between regions, while a long polygon is swept, and before composing).
    """
    conversion = Conversion.of(task, options)
    return None if conversion is None else conversion.run(key, labels, image, scratch)

"""What one task's sync stores: its conversion, done the same way whoever got the task.

A sync job (:func:`worker.jobs.sync_task`) converts the task it pulled; a resync
(:func:`worker.reconcile.resync`) converts the tasks Label Studio's listing already carried.
Both call :func:`task_outcome`, so an entry or a failure made from the listing is the one a
pull of the same task state makes: same entry bytes, same message, fingerprint and remedy.

The image is read or downloaded only when the mask depends on it (``orientation=file``, or no
result gives the size). A resync gives no ``images`` and leaves such tasks to a sync job
(``None``), which pulls the task and fetches the image.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ls_panoptic.comparisons import compare_task, stuff_ids
from ls_panoptic.compose import Scratch
from ls_panoptic.convert import Conversion
from ls_panoptic.errors import PanopticError
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import Annotation, ConvertOptions, Entry, Task
from ls_panoptic.naming import image_key, image_url
from ls_panoptic.sidecar import failure_message

from .labelstudio import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable
from .remedies import service_remedy
from .store import TaskAgreement

if TYPE_CHECKING:
    from .runtime import LabelStudioAPI

__all__ = ["Outcome", "task_outcome"]

log = logging.getLogger("worker.jobs")


@dataclass(frozen=True)
class Outcome:
    """What to store for one task.

    ``status``: ``ok`` (``entry`` and its ``image_url``), ``empty`` (no usable annotation) or
    ``error`` (``message``, ``fingerprint``, the image ``key`` it was for, ``remedy``; see
    :meth:`worker.store.Store.record_error`). ``agreement``: the task's pairs, if any;
    ``annotation_ids``: its annotations, for the ``ANNOTATIONS_DELETED`` index.
    """

    task_id: int
    status: Literal["ok", "empty", "error"]
    entry: Entry | None = None
    image_url: str | None = None
    message: str = ""
    fingerprint: str | None = None
    key: str | None = None
    remedy: str | None = None
    agreement: TaskAgreement | None = None
    annotation_ids: list[int] = field(default_factory=list)


def task_outcome(
    options: ConvertOptions,
    project: int,
    task: Task,
    labels: LabelSet,
    config_hash: str,
    *,
    images: LabelStudioAPI | None,
    scratch_dir: Path | None = None,
    scratch: Scratch | None = None,
) -> Outcome | None:
    """Convert ``task`` of ``project`` as it was pulled or listed (see module doc) with the
    conversion ``options``. ``images``: where a needed image is downloaded from (into a folder
    under ``scratch_dir``); ``None``: no download, the result is then ``None`` when the mask
    needs the image. ``scratch``: reused buffers (the entry's mask lives in them: encode it
    before the next conversion with the same one).

    Raises:
        LabelStudioUnavailable, LabelStudioAuthError: the image download may pass later.
    """
    task_id = int(task.id or 0)
    ids = [a.id for a in task.annotations if a.id is not None]
    agreement = _agreement(options, task, labels)
    common = {"task_id": task_id, "agreement": agreement, "annotation_ids": ids}
    try:
        converted = _convert(options, task, labels, images, scratch_dir, scratch)
        if converted is False:
            return None
        if converted is None:
            return Outcome(status="empty", **common)  # type: ignore[arg-type]
        entry, url = converted
        return Outcome(status="ok", entry=entry, image_url=url, **common)  # type: ignore[arg-type]
    except (LabelStudioUnavailable, LabelStudioAuthError):
        raise
    except _ConversionFailed as failed:  # fingerprinted: reconcile.failure_fingerprint
        message = failure_message(task_id, failed.cause)  # the batch's words, for live = batch
        from .reconcile import failure_fingerprint  # it converts through this module

        fingerprint = failure_fingerprint(task, failed.annotation, config_hash, options)
        _log_failure(project, message, failed.cause)
        return Outcome(
            status="error", message=message, fingerprint=fingerprint, key=failed.key,
            remedy=_remedy(failed.cause), **common,  # type: ignore[arg-type]
        )  # fmt: skip
    except (PanopticError, LabelStudioError, ValueError) as exc:  # a retry may mend these
        message = failure_message(task_id, exc)
        _log_failure(project, message, exc)
        return Outcome(status="error", message=message, remedy=_remedy(exc), **common)  # type: ignore[arg-type]


class _ConversionFailed(Exception):
    """The conversion of the selected ``annotation`` failed (``cause``): the same inputs would
    fail the same way (its fingerprint is taken only then, off the successful path). ``key``:
    the image key it was for (``None`` when the image URL gave none), which snapshots list."""

    def __init__(
        self, cause: PanopticError | ValueError, annotation: Annotation, key: str | None
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.annotation = annotation
        self.key = key


def _convert(
    options: ConvertOptions,
    task: Task,
    labels: LabelSet,
    images: LabelStudioAPI | None,
    scratch_dir: Path | None,
    scratch: Scratch | None,
) -> tuple[Entry, str] | Literal[False] | None:
    """The task's entry and image URL, ``None`` when it has no usable annotation, ``False``
    when the image is needed and there is no ``images`` to download it from. The annotation
    is selected and parsed once: to tell whether the image is needed, and to convert.

    Raises:
        _ConversionFailed: converting the selected annotation failed (see module doc).
        LabelStudioError: downloading the image failed (subclasses as for any call).
        PanopticError: the image file is not a readable image.
        ValueError: the annotation policy is unusable.
    """
    conversion = Conversion.of(task, options)
    if conversion is None:
        return None
    key: str | None = None
    try:
        url = image_url(task.data, labels.image_value)
        key = image_key(url, options.key, task.id)
        if not conversion.needs_image():  # see module doc
            return conversion.run(key, labels, scratch=scratch), url
    except (PanopticError, ValueError) as exc:
        raise _ConversionFailed(exc, conversion.annotation, key) from exc
    if images is None:
        return False
    with tempfile.TemporaryDirectory(dir=scratch_dir) as folder:
        # not fingerprinted: a download may pass later, a file may be replaced (failure_fingerprint)
        image = images.image_info(url, Path(folder), task_id=task.id)
        try:
            return conversion.run(key, labels, image, scratch=scratch), url
        except PanopticError as exc:
            raise _ConversionFailed(exc, conversion.annotation, key) from exc


def _agreement(options: ConvertOptions, task: Task, labels: LabelSet) -> TaskAgreement | None:
    """The PQ of each pair of the task's usable annotations, each converted as
    ``ls-panoptic agreement`` converts it without ``--images`` (sizes from the results);
    ``None`` with fewer than two, at no cost. Advisory: an annotation that fails to convert
    only loses its pairs (logged), and nothing here fails the sync."""
    if sum(not a.was_cancelled for a in task.annotations) < 2:
        return None
    try:
        compared = compare_task(task, labels, options)
    except (PanopticError, ValueError) as exc:
        compared = None
        log.info("agreement skipped task=%s: %s", task.id, exc)
    for failure in compared.failures if compared else ():
        log.info("agreement: %s", failure.message)
    if not compared or not compared.comparisons:
        return None
    return TaskAgreement(compared.comparisons, stuff_ids(labels, options))


def _remedy(exc: BaseException) -> str | None:
    """The ``Remedy`` of a core error, as the store keeps it (``EntryState.remedy``)."""
    remedy = exc.remedy if isinstance(exc, PanopticError) else None
    return None if remedy is None else remedy.value


def _log_failure(project: int, message: str, exc: BaseException) -> None:
    """A recorded failure, with what an operator can do about it (:mod:`worker.remedies`)."""
    advice = service_remedy(exc)
    log.warning("sync failed project=%d %s%s", project, message, f"; {advice}" if advice else "")

"""A whole export -> one snapshot and its sidecar, image by image, in bounded memory.

Each task is converted and written at once, so memory holds about one entry. Where it is
written is an :class:`~ls_panoptic.writers.EntryWriter`: the pickle by default, or another
format's writer (a writer that cannot hold one entry fails that task alone).
A task that fails is reported (task, region, reason, and what a user could change: ``remedy``)
and the others are still written, unless ``strict`` is set, in which case nothing is written
at all. Each task's annotation is selected once, when keys are planned, and parsed once, when
it is converted (:class:`~ls_panoptic.convert.Conversion`). With ``jobs`` above 1 the images
are converted (and the writer's per-image encoding done) in worker processes, and written
here in the same order, to the same bytes (:mod:`ls_panoptic.batch_pool`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compose import Scratch
from .convert import Conversion
from .errors import ImageError, PanopticError, Remedy
from .images import ImageIndex, ImageInfo
from .labels import LabelSet
from .model import ConvertOptions, Entry, Task
from .naming import image_key, image_url
from .sidecar import Failure, build_sidecar, failure_message, key_collisions
from .snapshot import write_json_atomic
from .writers import EntryWriter, PickleWriter

__all__ = ["BatchFailure", "BatchReport", "Failure", "Outcome", "convert_tasks", "plan_keys"]


@dataclass(frozen=True)
class BatchFailure(Failure):
    """A task left out, as the sidecar lists it, and what a user could change to let it
    through (``None``: the task itself must change); front ends word ``remedy`` for their
    users (:mod:`ls_panoptic.errors`)."""

    remedy: Remedy | None = None


def _failed(task_id: int | None, key: str | None, exc: Exception) -> BatchFailure:
    remedy = exc.remedy if isinstance(exc, PanopticError) else None
    return BatchFailure(task_id, key, failure_message(task_id, exc), remedy)


@dataclass(frozen=True)
class Outcome:
    """What happened to one task (passed to the progress callback)."""

    task_id: int | None
    key: str | None
    entry: Entry | None = None
    failure: BatchFailure | None = None
    skipped: str | None = None
    image: ImageInfo | None = None


@dataclass
class BatchReport:
    """Totals of one batch conversion (the CLI prints these as its summary)."""

    output: Path
    sidecar: Path
    written: int = 0
    failures: list[BatchFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    regions: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    dropped_regions: int = 0
    overlapped_pixels: int = 0
    warnings: list[str] = field(default_factory=list)
    aborted: bool = False
    prediction_ids: int = 0


@dataclass(frozen=True)
class _Planned:
    key: str
    url: str
    conversion: Conversion


def plan_keys(
    tasks: Sequence[Task], labels: LabelSet, options: ConvertOptions
) -> tuple[dict[int, _Planned], list[BatchFailure]]:
    """Key, image URL and conversion per task index, for tasks with a usable annotation.

    Tasks unreadable as exported, or whose image URL is missing, fail; two tasks with one key
    both fail, naming each other.
    """
    keys: dict[int, _Planned] = {}
    failures: list[BatchFailure] = []
    for index, task in enumerate(tasks):
        try:
            conversion = Conversion.of(task, options)
        except ImageError as exc:  # unreadable as exported: fails alone, naming why
            failures.append(_failed(task.id, None, exc))
            continue
        if conversion is None:
            continue
        try:
            url = image_url(task.data, labels.image_value)
            keys[index] = _Planned(image_key(url, options.key, task.id), url, conversion)
        except ValueError as exc:
            failures.append(_failed(task.id, None, exc))
    planned = list(keys)
    collided = key_collisions([(tasks[i].id, keys[i].key) for i in planned])
    for n, failure in collided.items():  # a KeyCollisionError's text, and so its remedy
        failures.append(BatchFailure(failure.task_id, failure.key, failure.message, Remedy.KEY))
        del keys[planned[n]]
    return keys, failures


def _image_for(
    planned: _Planned, images: ImageIndex | None, options: ConvertOptions
) -> tuple[ImageInfo | None, str | None]:
    if images is None:
        return None, None
    info = images.find(planned.url, options.key)
    if info is None:
        task_id = planned.conversion.task.id
        return None, f"task {task_id}: image {planned.url!r} is not among the images given, skipped"
    return info, None


def _convert_one(
    planned: _Planned, labels: LabelSet, images: ImageIndex | None, scratch: Scratch
) -> Outcome:
    task_id, key = planned.conversion.task.id, planned.key
    try:
        info, skipped = _image_for(planned, images, planned.conversion.options)
        if skipped:
            return Outcome(task_id, key, skipped=skipped)
        entry = planned.conversion.run(key, labels, info, scratch)
    except PanopticError as exc:
        return Outcome(task_id, key, failure=_failed(task_id, key, exc))
    return Outcome(task_id, key, entry=entry, image=info)


def _write(outcome: Outcome, add: Callable[[Entry, ImageInfo | None], None]) -> Outcome:
    """Write the outcome's entry (``add``: the writer's ``add`` or ``add_encoded``); an entry
    the format cannot hold fails its task."""
    if outcome.entry is None:
        return outcome
    try:
        add(outcome.entry, outcome.image)
    except ImageError as exc:
        exc.in_task(outcome.task_id)
        return Outcome(
            outcome.task_id, outcome.key, failure=_failed(outcome.task_id, outcome.key, exc)
        )
    return outcome


def _tally(report: BatchReport, outcome: Outcome) -> None:
    if outcome.failure:
        report.failures.append(outcome.failure)
    elif outcome.skipped:
        report.skipped.append(outcome.skipped)
    elif outcome.entry:
        meta = outcome.entry.meta
        report.written += 1
        report.regions.update(meta["regions"])
        report.ignored.update(meta["ignored"])
        report.dropped_regions += len(meta["dropped_regions"])
        report.overlapped_pixels += meta["overlapped_pixels"]
        if meta["warnings"]:  # one line per image, however many regions it names
            report.warnings.append(f"{outcome.key}: {'; '.join(meta['warnings'])}")


def _sidecar(
    labels: LabelSet,
    options: ConvertOptions,
    source: str,
    report: BatchReport,
    metas: dict[str, Any],
) -> dict[str, Any]:
    opts = dataclasses.asdict(options)
    opts["stuff"] = sorted(options.stuff)
    return build_sidecar(
        labels.id2label, metas, report.failures,
        source=source, options=opts, warnings=report.warnings,
    )  # fmt: skip


def convert_tasks(
    tasks: Sequence[Task],
    output: Path,
    labels: LabelSet,
    options: ConvertOptions,
    *,
    images: ImageIndex | None = None,
    strict: bool = False,
    source: str = "export",
    on_outcome: Callable[[Outcome], None] | None = None,
    writer: EntryWriter | None = None,
    jobs: int = 1,
    outcome_masks: bool = True,
) -> BatchReport:
    """Convert ``tasks`` into the snapshot ``output`` and its sidecar; see module docstring.

    ``writer``: where entries go (default: the pickle ``output``, :class:`PickleWriter`); its
    ``output`` and ``sidecar`` are the report's. ``jobs``: worker processes converting images
    (1: this process alone); the output is the same bytes whatever it is
    (:mod:`ls_panoptic.batch_pool`), and ``on_outcome`` sees the outcomes in input order.
    ``outcome_masks``: whether ``on_outcome`` reads the masks' pixels; when it does not and
    the writer encodes in the workers, the workers send no pixels back (``on_outcome`` then
    sees zeros of the mask's shape and dtype).
    """
    writer = writer if writer is not None else PickleWriter(output)
    report = BatchReport(output=writer.output, sidecar=writer.sidecar)
    report.prediction_ids = sum(task.prediction_ids for task in tasks)
    keys, key_failures = plan_keys(tasks, labels, options)
    report.failures.extend(key_failures)
    if strict and key_failures:
        report.aborted = True
        return report
    failed = {f.task_id for f in key_failures}
    metas: dict[str, Any] = {}
    jobs = min(jobs, len(keys))  # no idle workers to start for a few images

    def planned_tasks() -> Iterator[tuple[Task, _Planned | None]]:
        for index, task in enumerate(tasks):
            planned = keys.pop(index, None)  # once converted, its parse can go
            if planned is None and task.id in failed:
                continue
            yield task, planned

    try:
        with writer as sink:
            outcomes = closing(
                _outcomes(planned_tasks(), labels, images, sink, jobs, outcome_masks)
            )
            with outcomes as each:  # closed at once on an error or --strict's stop
                for outcome in each:
                    _tally(report, outcome)
                    if on_outcome:
                        on_outcome(outcome)
                    if outcome.failure and strict:
                        raise _Abort
                    if outcome.entry:
                        metas[outcome.entry.key] = outcome.entry.meta
    except _Abort:
        report.aborted = True
        return report
    write_json_atomic(report.sidecar, _sidecar(labels, options, source, report, metas))
    return report


def _no_annotation(task: Task) -> Outcome:
    return Outcome(task.id, None, skipped=f"task {task.id}: no usable annotation")


def _outcomes(
    planned_tasks: Iterator[tuple[Task, _Planned | None]],
    labels: LabelSet,
    images: ImageIndex | None,
    writer: EntryWriter,
    jobs: int,
    outcome_masks: bool,
) -> Generator[Outcome, None, None]:
    """Each task's outcome, in order, its entry written: converted here (``jobs`` 1) or in
    ``jobs`` worker processes, the writer's encoder run there too."""
    if jobs <= 1:
        scratch = Scratch()  # entries are written before the next conversion reuses it
        for task, planned in planned_tasks:
            outcome = (
                _convert_one(planned, labels, images, scratch) if planned else _no_annotation(task)
            )
            yield _write(outcome, writer.add)
        return
    from .batch_pool import Worker, run_in_pool  # multiprocessing only when asked

    encoder = writer.encoder()  # with none, the writer needs the pixels
    masks = outcome_masks or encoder is None
    worker = Worker(labels, images, encoder, _convert_one, _failed, masks)
    with closing(run_in_pool(worker, planned_tasks, jobs)) as results:  # stops the workers
        for task, outcome, encoded in results:
            if outcome is None:
                yield _no_annotation(task)
                continue

            def add(entry: Entry, image: ImageInfo | None, encoded: Any = encoded) -> None:
                writer.add_encoded(entry, image, encoded)

            yield _write(outcome, add)


class _Abort(Exception):
    """Internal: leaves the snapshot writer without committing (``strict``)."""

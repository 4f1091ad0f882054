"""Which annotations of a task are compared, each converted exactly as ``convert`` converts it,
and the panoptic quality of each pair (:mod:`ls_panoptic.agreement`).

What is compared (``against``):

- ``annotators``: every pair of a task's usable annotations (cancelled ones never count, drafts
  are never read), in tasks with two or more; ``a`` is the older of the two (lower id).
- ``predictions``: each prediction (``a``) against the annotation the selection policy picks
  (``b``): the model's quality on the corrected work.
- ``ground-truth``: each other usable annotation (``a``) against the newest one marked ground
  truth (``b``); tasks without one are skipped.

PQ is symmetric, so ``a`` and ``b`` only say which side is the reference. Every annotation is
converted once per task, with the options and label set a ``convert`` run would use; the stuff
classes are ``options.stuff`` and background. An annotation that fails to convert is reported
(task, annotation, reason) and its pairs are left out; the task's other pairs are kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .agreement import PairQuality, Segments, pairwise_quality, panoptic_quality
from .convert import Conversion
from .errors import PanopticError, Remedy
from .images import ImageIndex, ImageInfo
from .labels import LabelSet
from .model import Annotation, ConvertOptions, Task
from .naming import image_key, image_url
from .selection import select_annotation
from .sidecar import failure_message

__all__ = [
    "AGAINST",
    "Against",
    "Comparison",
    "ComparisonFailure",
    "Side",
    "TaskComparisons",
    "compare_task",
    "compare_tasks",
    "pairs_for",
    "stuff_ids",
]

Against = Literal["annotators", "predictions", "ground-truth"]
AGAINST: tuple[Against, ...] = ("annotators", "predictions", "ground-truth")


@dataclass(frozen=True)
class Side:
    """One side of a pair: the annotation (or prediction) id and its annotator's user id."""

    annotation_id: int | None
    annotator: int | None
    prediction: bool = False

    @classmethod
    def of(cls, annotation: Annotation) -> Side:
        return cls(annotation.id, annotation.completed_by, annotation.is_prediction)


@dataclass(frozen=True)
class Comparison:
    """The PQ of one pair of one task's annotations (``b`` is the reference)."""

    task_id: int | None
    image: str
    a: Side
    b: Side
    quality: PairQuality


@dataclass(frozen=True)
class ComparisonFailure:
    """A task, or one annotation of it, that could not be compared, and why."""

    task_id: int | None
    annotation_id: int | None
    message: str
    remedy: Remedy | None = None


@dataclass
class TaskComparisons:
    """What happened to one task: its pairs, its failures, or why it was skipped."""

    task_id: int | None
    comparisons: list[Comparison] = field(default_factory=list)
    failures: list[ComparisonFailure] = field(default_factory=list)
    skipped: str | None = None


def stuff_ids(labels: LabelSet, options: ConvertOptions) -> frozenset[int]:
    """The stuff class ids: ``options.stuff`` (those in the label set) and background."""
    found = (labels.class_id(label) for label in options.stuff)
    return frozenset({labels.background_id, *(c for c in found if c is not None)})


def pairs_for(task: Task, against: Against, policy: str) -> list[tuple[Annotation, Annotation]]:
    """The ``(a, b)`` pairs of ``task`` to compare (module docstring).

    Raises:
        ValueError: a bad policy, or an unparseable timestamp.
    """
    usable = sorted(
        (a for a in task.annotations if not a.was_cancelled),
        key=lambda a: -1 if a.id is None else a.id,
    )
    if against == "annotators":
        return list(itertools.combinations(usable, 2))
    if against == "predictions":
        selected = select_annotation(task, policy)
        return [] if selected is None else [(p, selected) for p in task.predictions]
    if not any(a.ground_truth for a in usable):
        return []
    reference = select_annotation(task, "ground-truth")
    return [(a, reference) for a in usable if reference is not None and a is not reference]


def _failed(task: Task, annotation: Annotation | None, exc: Exception) -> ComparisonFailure:
    message = failure_message(task.id, exc)
    if annotation is not None:
        kind = "prediction" if annotation.is_prediction else "annotation"
        message = f"{message} (in {kind} {annotation.id})"
    remedy = exc.remedy if isinstance(exc, PanopticError) else None
    return ComparisonFailure(
        task.id, None if annotation is None else annotation.id, message, remedy
    )


def _segments(
    task: Task,
    annotations: Iterable[Annotation],
    context: tuple[str, LabelSet, ConvertOptions, ImageInfo | None],
    out: TaskComparisons,
) -> dict[int, Segments]:
    """Each annotation converted once, by ``id()``; failures go to ``out``."""
    key, labels, options, image = context
    converted: dict[int, Segments] = {}
    tried: set[int] = set()
    for annotation in annotations:
        if id(annotation) in tried:
            continue
        tried.add(id(annotation))
        try:
            entry = Conversion.of_annotation(task, annotation, options).run(key, labels, image)
        except PanopticError as exc:
            out.failures.append(_failed(task, annotation, exc))
            continue
        converted[id(annotation)] = Segments.of(entry.panoptic_mask, entry.inst2class)
    return converted


def compare_task(
    task: Task,
    labels: LabelSet,
    options: ConvertOptions,
    against: Against = "annotators",
    images: ImageIndex | None = None,
) -> TaskComparisons:
    """The comparisons of one task (module docstring)."""
    out = TaskComparisons(task.id)
    try:
        pairs = pairs_for(task, against, options.annotation)
        if not pairs:
            out.skipped = f"task {task.id}: {_nothing_to_compare(task, against)}"
            return out
        url = image_url(task.data, labels.image_value)
        key = image_key(url, options.key, task.id)
    except (ValueError, PanopticError) as exc:
        out.failures.append(_failed(task, None, exc))
        return out
    image = None if images is None else images.find(url, options.key)
    if images is not None and image is None:
        out.skipped = f"task {task.id}: image {url!r} is not among the images given, skipped"
        return out
    context = (key, labels, options, image)
    converted = _segments(task, itertools.chain.from_iterable(pairs), context, out)
    kept = [(a, b) for a, b in pairs if id(a) in converted and id(b) in converted]
    out.comparisons.extend(_compared(task, key, kept, converted, stuff_ids(labels, options), out))
    return out


def _compared(
    task: Task,
    key: str,
    pairs: list[tuple[Annotation, Annotation]],
    converted: dict[int, Segments],
    stuff: frozenset[int],
    out: TaskComparisons,
) -> list[Comparison]:
    """The pairs' PQ: all in one call (three masks take one pass over the pixels), else, when
    that fails, pair by pair, so that one failing pair costs only itself."""
    order = list(converted)
    index = [(order.index(id(a)), order.index(id(b))) for a, b in pairs]
    segments = list(converted.values())
    qualities: list[PairQuality | None]
    try:
        qualities = list(pairwise_quality(segments, index, stuff))
    except ValueError:
        qualities = []
        for (a, b), (i, j) in zip(pairs, index, strict=True):
            try:
                qualities.append(panoptic_quality(segments[i], segments[j], stuff))
            except ValueError as exc:  # sizes differ: they disagree on the image
                reason = ValueError(f"annotations {a.id} and {b.id} cannot be compared: {exc}")
                out.failures.append(_failed(task, None, reason))
                qualities.append(None)
    return [
        Comparison(task.id, key, Side.of(a), Side.of(b), quality)
        for (a, b), quality in zip(pairs, qualities, strict=True)
        if quality is not None
    ]


def _nothing_to_compare(task: Task, against: Against) -> str:
    if against == "annotators":
        return "fewer than two usable annotations"
    if against == "predictions" and task.prediction_ids and not task.predictions:
        return (
            "its predictions are listed by id only, as Label Studio's JSON export lists them; "
            "export them as objects (POST /api/projects/<id>/exports/ with "
            '{"serialization_options": {"predictions": {"only_id": false}}})'
        )
    if against == "predictions":
        return "no prediction, or no annotation to compare it with"
    return "no annotation marked ground truth, or no other annotation"


def compare_tasks(
    tasks: Sequence[Task],
    labels: LabelSet,
    options: ConvertOptions,
    against: Against = "annotators",
    images: ImageIndex | None = None,
    on_task: Callable[[TaskComparisons], None] | None = None,
) -> list[TaskComparisons]:
    """:func:`compare_task` for each task, in order; ``on_task`` is called after each."""
    results = []
    for task in tasks:
        result = compare_task(task, labels, options, against, images)
        if on_task is not None:
            on_task(result)
        results.append(result)
    return results

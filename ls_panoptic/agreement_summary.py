"""Summaries of compared pairs (:mod:`ls_panoptic.comparisons`), and their JSON and CSV records.

- Per task: the mean PQ, SQ and RQ of its pairs, and its lowest pair PQ; worst (lowest mean
  PQ) first. ``--min-pq`` lists the tasks whose mean PQ is below it, for review.
- Per annotator pair (unordered; a prediction's side is ``prediction``) and per annotator
  (every pair they are in: their mean against the others): mean PQ, SQ and RQ over pairs.
- Per class: TP, FP, FN and the IoU sum pooled over every pair, then SQ, RQ and PQ of the
  pooled counts: Kirillov's dataset-level PQ of that class. ``pairs``: pairs it is present in.
- Overall: the mean over pairs; ``things`` and ``stuff`` over the pairs where such a class is
  present.

Records (:func:`pair_record`, :func:`summary_record`, :func:`csv_row`) are plain JSON-able
values; a side's annotator is the Label Studio user id (``completed_by``), ``null`` for a
prediction or when unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .agreement import PairQuality
from .comparisons import Comparison, Side
from .labels import LabelSet
from .pq import ClassCounts, Quality, mean_of

__all__ = [
    "CSV_FIELDS",
    "Mean",
    "Summary",
    "annotator_name",
    "csv_row",
    "pair_record",
    "review_record",
    "summarise",
    "summary_record",
    "worst_first",
]

CSV_FIELDS = (
    "task_id", "image", "a_annotation", "a_annotator", "b_annotation", "b_annotator",
    "pq", "sq", "rq", "things_pq", "stuff_pq",
)  # fmt: skip


@dataclass(frozen=True)
class Mean:
    """Mean PQ, SQ and RQ over ``pairs`` pairs, and the lowest PQ among them."""

    pq: float
    sq: float
    rq: float
    pairs: int
    min_pq: float

    @classmethod
    def of(cls, qualities: Iterable[Quality | None]) -> Mean | None:
        present = [q for q in qualities if q is not None]
        if not present:
            return None
        mean = mean_of(present)
        return cls(mean.pq, mean.sq, mean.rq, len(present), min(q.pq for q in present))


@dataclass(frozen=True)
class Summary:
    """Every summary of one run, worst first. ``tasks``: a pair of the task (for its id and
    image) and the task's mean; ``classes``: pooled counts and the pairs the class is in."""

    tasks: list[tuple[Comparison, Mean]]
    annotator_pairs: list[tuple[str, Mean]]
    annotators: list[tuple[str, Mean]]
    classes: dict[int, tuple[ClassCounts, int]]
    overall: Mean | None
    things: Mean | None
    stuff: Mean | None

    def below(self, min_pq: float) -> list[tuple[Comparison, Mean]]:
        """Tasks whose mean PQ is below ``min_pq``, worst first."""
        return [(first, mean) for first, mean in self.tasks if mean.pq < min_pq]


def annotator_name(side: Side) -> str:
    if side.prediction:
        return "prediction"
    return "unknown user" if side.annotator is None else f"user {side.annotator}"


def worst_first(comparisons: Iterable[Comparison]) -> list[Comparison]:
    return sorted(comparisons, key=lambda c: (c.quality.overall.pq, _order(c.task_id)))


def _order(task_id: int | None) -> int:
    return -1 if task_id is None else task_id


def _grouped(
    comparisons: Sequence[Comparison], keys: Callable[[Comparison], Iterable[str]]
) -> list[tuple[str, Mean]]:
    groups: dict[str, list[Quality]] = {}
    for comparison in comparisons:
        for key in dict.fromkeys(keys(comparison)):
            groups.setdefault(key, []).append(comparison.quality.overall)
    means = [(key, Mean.of(qualities)) for key, qualities in groups.items()]
    return sorted(((k, m) for k, m in means if m is not None), key=lambda km: (km[1].pq, km[0]))


def _by_task(comparisons: Sequence[Comparison]) -> list[tuple[Comparison, Mean]]:
    tasks: dict[int | None, list[Comparison]] = {}
    for comparison in comparisons:
        tasks.setdefault(comparison.task_id, []).append(comparison)
    out = []
    for pairs in tasks.values():
        mean = Mean.of(c.quality.overall for c in pairs)
        if mean is not None:
            out.append((pairs[0], mean))
    return sorted(out, key=lambda cm: (cm[1].pq, _order(cm[0].task_id)))


def _pooled(comparisons: Sequence[Comparison]) -> dict[int, tuple[ClassCounts, int]]:
    pooled: dict[int, tuple[ClassCounts, int]] = {}
    for comparison in comparisons:
        for class_id, counts in comparison.quality.per_class.items():
            total, pairs = pooled.get(class_id, (ClassCounts(class_id), 0))
            pooled[class_id] = (total + counts, pairs + 1)
    return dict(sorted(pooled.items()))


def summarise(comparisons: Sequence[Comparison]) -> Summary:
    """The summaries of ``comparisons`` (module docstring)."""

    def pair_key(c: Comparison) -> list[str]:
        return [" / ".join(sorted((annotator_name(c.a), annotator_name(c.b))))]

    return Summary(
        tasks=_by_task(comparisons),
        annotator_pairs=_grouped(comparisons, pair_key),
        annotators=_grouped(comparisons, lambda c: (annotator_name(c.a), annotator_name(c.b))),
        classes=_pooled(comparisons),
        overall=Mean.of(c.quality.overall for c in comparisons),
        things=Mean.of(c.quality.things for c in comparisons),
        stuff=Mean.of(c.quality.stuff for c in comparisons),
    )


def _quality(quality: Quality | None) -> dict[str, Any] | None:
    if quality is None:
        return None
    return {"pq": quality.pq, "sq": quality.sq, "rq": quality.rq, "classes": quality.classes}


def _counts(counts: ClassCounts, stuff: frozenset[int]) -> dict[str, Any]:
    return {
        "class_id": counts.class_id,
        "kind": "stuff" if counts.class_id in stuff else "thing",
        "pq": counts.pq, "sq": counts.sq, "rq": counts.rq,
        "tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "iou_sum": counts.iou_sum,
    }  # fmt: skip


def _side(side: Side) -> dict[str, Any]:
    return {
        "annotation_id": side.annotation_id,
        "annotator": None if side.prediction else side.annotator,
        "prediction": side.prediction,
    }


def pair_record(comparison: Comparison, labels: LabelSet, stuff: frozenset[int]) -> dict[str, Any]:
    """One compared pair as a JSON object (``per_class`` keyed by label)."""
    quality: PairQuality = comparison.quality
    return {
        "task_id": comparison.task_id,
        "image": comparison.image,
        "a": _side(comparison.a),
        "b": _side(comparison.b),
        "pq": quality.overall.pq,
        "sq": quality.overall.sq,
        "rq": quality.overall.rq,
        "things": _quality(quality.things),
        "stuff": _quality(quality.stuff),
        "per_class": {
            labels.id2label.get(class_id, str(class_id)): _counts(counts, stuff)
            for class_id, counts in quality.per_class.items()
        },
    }


def _mean(mean: Mean | None) -> dict[str, Any] | None:
    if mean is None:
        return None
    return {"pq": mean.pq, "sq": mean.sq, "rq": mean.rq, "pairs": mean.pairs, "min_pq": mean.min_pq}


def summary_record(summary: Summary, labels: LabelSet, stuff: frozenset[int]) -> dict[str, Any]:
    """The summaries as JSON values (they sit beside the pairs in ``--json``)."""
    return {
        "overall": _mean(summary.overall),
        "things": _mean(summary.things),
        "stuff": _mean(summary.stuff),
        "tasks": [
            {"task_id": first.task_id, "image": first.image, **(_mean(mean) or {})}
            for first, mean in summary.tasks
        ],
        "annotator_pairs": [
            {"annotators": name.split(" / "), **(_mean(mean) or {})}
            for name, mean in summary.annotator_pairs
        ],
        "annotators": [
            {"annotator": name, **(_mean(mean) or {})} for name, mean in summary.annotators
        ],
        "per_class": {
            labels.id2label.get(class_id, str(class_id)): {
                **_counts(counts, stuff),
                "pairs": pairs,
            }
            for class_id, (counts, pairs) in summary.classes.items()
        },
    }


def review_record(summary: Summary, min_pq: float | None) -> dict[str, Any] | None:
    """``{"min_pq", "task_ids"}``: the tasks whose mean PQ is below ``min_pq``, worst first;
    ``None`` without a threshold."""
    if min_pq is None:
        return None
    return {"min_pq": min_pq, "task_ids": [first.task_id for first, _ in summary.below(min_pq)]}


def csv_row(comparison: Comparison) -> dict[str, Any]:
    """One compared pair as a CSV row (:data:`CSV_FIELDS`)."""
    quality = comparison.quality
    return {
        "task_id": comparison.task_id,
        "image": comparison.image,
        "a_annotation": comparison.a.annotation_id,
        "a_annotator": annotator_name(comparison.a),
        "b_annotation": comparison.b.annotation_id,
        "b_annotator": annotator_name(comparison.b),
        "pq": f"{quality.overall.pq:.6f}",
        "sq": f"{quality.overall.sq:.6f}",
        "rq": f"{quality.overall.rq:.6f}",
        "things_pq": "" if quality.things is None else f"{quality.things.pq:.6f}",
        "stuff_pq": "" if quality.stuff is None else f"{quality.stuff.pq:.6f}",
    }

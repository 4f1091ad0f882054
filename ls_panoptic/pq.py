"""PQ, SQ and RQ from matching counts (Kirillov et al., CVPR 2019): per class, and averaged.

Per class ``c``: ``SQ = sum(IoU of matches) / TP`` (0 without a match), ``RQ = TP / (TP + FP/2
+ FN/2)``, ``PQ = SQ x RQ``. Averages are over the classes with ``TP + FP + FN > 0`` (a class
absent from both sides has no quality to average); PQ, SQ and RQ are each averaged, as
panopticapi and torchmetrics do. Counts add up, so pooling them over many pairs gives the
dataset-level PQ of a class. How segments are matched: :mod:`ls_panoptic.agreement`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ClassCounts", "Quality", "Scored", "average", "mean_of"]


@dataclass(frozen=True)
class ClassCounts:
    """One class's matching counts; they add up over pairs (a pooled, dataset-level PQ)."""

    class_id: int
    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0

    def __add__(self, other: ClassCounts) -> ClassCounts:
        if other.class_id != self.class_id:
            raise ValueError(f"adding counts of classes {self.class_id} and {other.class_id}")
        return ClassCounts(
            self.class_id,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.iou_sum + other.iou_sum,
        )

    @property
    def sq(self) -> float:
        return self.iou_sum / self.tp if self.tp else 0.0

    @property
    def rq(self) -> float:
        denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
        return self.tp / denominator if denominator else 0.0

    @property
    def pq(self) -> float:
        return self.sq * self.rq


@dataclass(frozen=True)
class Quality:
    """PQ, SQ and RQ averaged over ``classes`` present classes."""

    pq: float
    sq: float
    rq: float
    classes: int


class Scored(Protocol):
    """Anything with a PQ, SQ and RQ: a class's counts, a pair's quality."""

    @property
    def pq(self) -> float: ...
    @property
    def sq(self) -> float: ...
    @property
    def rq(self) -> float: ...


def mean_of(items: Sequence[Scored]) -> Quality:
    """The mean PQ, SQ and RQ of ``items`` (not empty); ``classes``: how many were averaged."""
    n = len(items)
    return Quality(
        pq=sum(i.pq for i in items) / n,
        sq=sum(i.sq for i in items) / n,
        rq=sum(i.rq for i in items) / n,
        classes=n,
    )


def average(counts: Iterable[ClassCounts]) -> Quality | None:
    """The mean PQ, SQ and RQ over classes with ``TP + FP + FN > 0``; ``None`` without one."""
    present = [c for c in counts if c.tp + c.fp + c.fn > 0]
    return mean_of(present) if present else None

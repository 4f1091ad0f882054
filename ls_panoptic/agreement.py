"""Panoptic quality (PQ) between two panoptic masks of one image: how far two annotations agree.

Definitions (Kirillov et al., "Panoptic Segmentation", CVPR 2019; the numbers torchmetrics'
``PanopticQuality`` gives for the same masks, checked in ``tests/unit/test_agreement_torch.py``):

- Segments. A mask holds instance ids (``uint32`` ``(height, width)``, the output contract), and
  ``inst2class`` gives each id its class. A segment is the pixels of one id, except that all ids
  of a *stuff* class form one segment (background is stuff). The conversion already writes one
  segment per stuff class; merging here makes the definition hold for any pair of masks.
- Void. Id 0 is void: its pixels belong to no segment. The conversion never writes it (every
  pixel is a segment, background included), so for ``ls-panoptic`` masks nothing is void. Void
  is handled as torchmetrics does, the same way on both sides: a pixel void on either side is
  left out of an IoU's union, and an unmatched segment lying more than half on the other side's
  void is neither a false positive nor a false negative.
- Matching. A segment ``p`` of ``a`` and ``q`` of ``b`` of the same class match when
  ``IoU = |p & q| / (|p - void_b| + |q - void_a| - |p & q|) > 0.5``; above 0.5, a segment
  matches at most one other.
- Per class ``c``: ``TP`` matched pairs, ``FP`` unmatched segments of ``a``, ``FN`` unmatched
  segments of ``b``; ``SQ = sum(IoU of matches) / TP`` (0 without a match), ``RQ = TP / (TP +
  FP/2 + FN/2)``, ``PQ = SQ x RQ`` (:mod:`ls_panoptic.pq`).
- Averages: over the classes with ``TP + FP + FN > 0``; a class absent from both masks does not
  count (it has no quality to average). PQ, SQ and RQ are each averaged, so the average PQ is
  not in general the product of the average SQ and RQ. ``things`` averages over thing classes,
  ``stuff`` over stuff classes, background included; ``None`` when no such class is present.
- Symmetry: swapping ``a`` and ``b`` swaps FP with FN and leaves PQ, SQ and RQ unchanged.

Computation: one joint histogram of ``(id_a, id_b)`` pixel pairs
(:mod:`ls_panoptic.joint_histogram`); everything else works on that small matrix, never again
on pixels.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .joint_histogram import joint_histogram, pair_histograms
from .pq import ClassCounts, Quality, average

__all__ = ["PairQuality", "Segments", "pairwise_quality", "panoptic_quality"]

VOID = 0
_MATCH_IOU = 0.5


@dataclass(frozen=True)
class PairQuality:
    """PQ of one pair of masks.

    Attributes:
        per_class: counts of every class present in either mask, by class id.
        overall: averaged over all present classes; ``things`` and ``stuff`` over each kind.
    """

    per_class: dict[int, ClassCounts]
    overall: Quality
    things: Quality | None
    stuff: Quality | None


@dataclass(frozen=True)
class Segments:
    """One mask prepared for comparisons (narrowed once, however many pairs it is in).

    Attributes:
        ids: the mask, ``uint8`` when its ids fit, else ``uint32``; ``(height, width)``.
        classes: ``classes[id]`` is the class of instance ``id``, -1 for void and unused ids.
    """

    ids: npt.NDArray[Any]
    classes: npt.NDArray[np.int64]

    @classmethod
    def of(cls, mask: npt.NDArray[Any], inst2class: Mapping[int, int]) -> Segments:
        """Prepare ``mask`` (integer ``(height, width)``; 0 is void).

        Raises:
            ValueError: not a 2-d integer mask, or an id above 0 without a class.
        """
        if mask.ndim != 2 or mask.dtype.kind not in "ui":
            raise ValueError(f"a mask must be 2-d integers, got {mask.dtype} {mask.shape}")
        top = max([0, *inst2class])
        high = int(mask.max(initial=0))
        if high > top or (mask.dtype.kind == "i" and int(mask.min(initial=0)) < 0):
            raise ValueError(f"the mask holds ids outside inst2class (up to {high})")
        classes = np.full(top + 1, -1, dtype=np.int64)
        for instance, class_id in inst2class.items():
            if instance != VOID:
                classes[instance] = class_id
        ids = mask.astype(np.uint8 if top <= 255 else np.uint32, copy=False)
        return cls(np.ascontiguousarray(ids), classes)


def _merge_stuff(classes: npt.NDArray[np.int64], stuff: Collection[int]) -> npt.NDArray[Any]:
    """Segment index of each id: 0 for void, one index per stuff class, one per other id."""
    segment = np.zeros(len(classes), dtype=np.intp)
    stuff_index: dict[int, int] = {}
    next_index = 1
    for instance in range(1, len(classes)):
        class_id = int(classes[instance])
        if class_id < 0:
            continue
        if class_id in stuff:
            if class_id not in stuff_index:
                stuff_index[class_id] = next_index
                next_index += 1
            segment[instance] = stuff_index[class_id]
        else:
            segment[instance] = next_index
            next_index += 1
    return segment


def _segment_table(
    hist: npt.NDArray[Any], seg_a: npt.NDArray[Any], seg_b: npt.NDArray[Any]
) -> npt.NDArray[np.int64]:
    table = np.zeros((int(seg_a.max()) + 1, int(seg_b.max()) + 1), dtype=np.int64)
    np.add.at(table, (seg_a[:, None], seg_b[None, :]), hist)
    return table


def _classes_of(segment: npt.NDArray[Any], classes: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    out = np.full(int(segment.max()) + 1, -1, dtype=np.int64)
    out[segment[1:]] = classes[1:]
    out[0] = -1
    return out


def _unmatched(
    areas: npt.NDArray[Any], on_void: npt.NDArray[Any], matched: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Segments that count as FP (or FN): present, unmatched, at most half on void."""
    present = areas > 0
    present[0] = False
    return present & ~matched & (on_void * 2 <= areas)


def panoptic_quality(a: Segments, b: Segments, stuff: Collection[int]) -> PairQuality:
    """PQ between ``a`` and ``b`` (module docstring); ``stuff``: stuff class ids.

    Raises:
        ValueError: the masks differ in shape, an id has no class, or neither mask holds a
            segment.
    """
    hist = joint_histogram(a.ids, b.ids, len(a.classes), len(b.classes))
    return _from_histogram(hist, a, b, stuff)


def pairwise_quality(
    segments: Sequence[Segments], pairs: Sequence[tuple[int, int]], stuff: Collection[int]
) -> list[PairQuality]:
    """:func:`panoptic_quality` of each pair ``(i, j)`` of ``segments``, in order; three masks'
    pairs take one pass over the pixels (:func:`~ls_panoptic.joint_histogram.pair_histograms`).

    Raises:
        ValueError: as :func:`panoptic_quality`, for the first pair that fails.
    """
    sizes = [len(s.classes) for s in segments]
    hists = pair_histograms([s.ids for s in segments], sizes, pairs)
    return [_from_histogram(hists[(i, j)], segments[i], segments[j], stuff) for i, j in pairs]


def _from_histogram(
    hist: npt.NDArray[Any], a: Segments, b: Segments, stuff: Collection[int]
) -> PairQuality:
    _check_classified(hist, a.classes, b.classes)
    seg_a, seg_b = _merge_stuff(a.classes, stuff), _merge_stuff(b.classes, stuff)
    table = _segment_table(hist, seg_a, seg_b)
    cls_a, cls_b = _classes_of(seg_a, a.classes), _classes_of(seg_b, b.classes)
    area_a, area_b = table.sum(axis=1), table.sum(axis=0)
    union = (area_a - table[:, 0])[:, None] + (area_b - table[0, :])[None, :] - table
    same = (cls_a[:, None] == cls_b[None, :]) & (cls_a[:, None] >= 0) & (table > 0)
    iou = np.divide(table, union, out=np.zeros(table.shape), where=same & (union > 0))
    match = same & (iou > _MATCH_IOU)
    rows, cols = np.nonzero(match)
    fp = _unmatched(area_a, table[:, 0], match.any(axis=1))
    fn = _unmatched(area_b, table[0, :], match.any(axis=0))
    counts = _per_class(cls_a[rows], iou[rows, cols], cls_a[fp], cls_b[fn])
    if not counts:
        raise ValueError("neither mask holds a segment (all void)")
    return PairQuality(
        per_class=counts,
        overall=_required(average(counts.values())),
        things=average(c for c in counts.values() if c.class_id not in stuff),
        stuff=average(c for c in counts.values() if c.class_id in stuff),
    )


def _check_classified(
    hist: npt.NDArray[Any], classes_a: npt.NDArray[Any], classes_b: npt.NDArray[Any]
) -> None:
    """Refuse an id above 0 that occurs in a mask but has no class."""
    for side, counts, classes in (
        ("a", hist.sum(axis=1), classes_a),
        ("b", hist.sum(axis=0), classes_b),
    ):
        unclassified = np.flatnonzero((counts > 0) & (classes < 0))
        unclassified = unclassified[unclassified != VOID]
        if unclassified.size:
            raise ValueError(f"mask {side}: id {int(unclassified[0])} has no class in inst2class")


def _per_class(
    tp_classes: npt.NDArray[Any],
    ious: npt.NDArray[Any],
    fp_classes: npt.NDArray[Any],
    fn_classes: npt.NDArray[Any],
) -> dict[int, ClassCounts]:
    present = sorted({int(c) for c in (*tp_classes, *fp_classes, *fn_classes)})
    out = {}
    for class_id in present:
        of_class = tp_classes == class_id
        out[class_id] = ClassCounts(
            class_id,
            tp=int(of_class.sum()),
            fp=int((fp_classes == class_id).sum()),
            fn=int((fn_classes == class_id).sum()),
            iou_sum=float(ious[of_class].sum()),
        )
    return out


def _required(quality: Quality | None) -> Quality:
    if quality is None:  # counts is non-empty, so some class is present
        raise ValueError("no class present")
    return quality

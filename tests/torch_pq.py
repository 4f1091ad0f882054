"""The independent implementation the agreement is checked against: torchmetrics'
``PanopticQuality`` on the same masks (``(class, instance)`` per pixel, as it takes them)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torchmetrics.detection import PanopticQuality

from ls_panoptic.agreement import PairQuality

__all__ = ["assert_same_as_torchmetrics", "torchmetrics_pq"]

TOLERANCE = 1e-6


def _colours(mask: npt.NDArray[Any], inst2class: Mapping[int, int], void: int) -> torch.Tensor:
    """``(1, height, width, 2)``: class and instance id per pixel; id 0 is void."""
    lut = np.full(max([0, *inst2class]) + 1, void, dtype=np.int64)
    for instance, class_id in inst2class.items():
        lut[instance] = class_id
    ids = mask.astype(np.int64)
    classes = lut[ids]
    return torch.from_numpy(np.stack([classes, ids], axis=-1)[None])


def torchmetrics_pq(
    a: tuple[npt.NDArray[Any], Mapping[int, int]],
    b: tuple[npt.NDArray[Any], Mapping[int, int]],
    classes: Collection[int],
    stuff: Collection[int],
) -> tuple[tuple[float, float, float], dict[int, tuple[float, float, float]]]:
    """torchmetrics' ``(pq, sq, rq)`` of ``a`` (preds) against ``b`` (target), and per class."""
    things = sorted(set(classes) - set(stuff))
    stuffs = sorted(stuff)
    void = 1 + max([0, *classes])  # torchmetrics' own void category, (void, 0)
    preds, target = _colours(*a, void), _colours(*b, void)
    overall = PanopticQuality(things=set(things), stuffs=set(stuffs), return_sq_and_rq=True,
                              allow_unknown_preds_category=True)  # fmt: skip
    per_class = PanopticQuality(
        things=set(things), stuffs=set(stuffs), return_sq_and_rq=True, return_per_class=True,
        allow_unknown_preds_category=True,
    )  # fmt: skip
    pq, sq, rq = (float(v) for v in overall(preds, target))
    rows = per_class(preds, target).reshape(-1, 3)  # things sorted, then stuff sorted
    order = [*things, *stuffs]
    return (pq, sq, rq), {c: tuple(float(v) for v in rows[n]) for n, c in enumerate(order)}  # type: ignore[misc]


def assert_same_as_torchmetrics(
    ours: PairQuality,
    a: tuple[npt.NDArray[Any], Mapping[int, int]],
    b: tuple[npt.NDArray[Any], Mapping[int, int]],
    classes: Collection[int],
    stuff: Collection[int],
) -> None:
    """PQ, SQ and RQ, overall and per present class, equal torchmetrics' to 1e-6."""
    (pq, sq, rq), per_class = torchmetrics_pq(a, b, classes, stuff)
    got = (ours.overall.pq, ours.overall.sq, ours.overall.rq)
    assert np.allclose(got, (pq, sq, rq), rtol=0, atol=TOLERANCE), (got, (pq, sq, rq))
    for class_id, counts in ours.per_class.items():
        mine = (counts.pq, counts.sq, counts.rq)
        assert np.allclose(mine, per_class[class_id], rtol=0, atol=TOLERANCE), (class_id, mine)
    for class_id, theirs in per_class.items():
        if class_id not in ours.per_class:
            assert theirs == (0.0, 0.0, 0.0), (class_id, theirs)

"""The store's agreement records: the PQ of each pair of a task's annotations
(:mod:`ls_panoptic.comparisons`), kept with the task's state, and each project's running totals.

Glossary of the stored formats:

- agreement record (JSON, one per task with a compared pair, in the project's ``agreement``
  hash)::

      {"image": image key, "stuff": [stuff class ids],
       "pairs": [{"a": [annotation id, annotator], "b": [annotation id, annotator],
                  "pq": float, "sq": float, "rq": float,
                  "per_class": {"<class id>": [tp, fp, fn, iou_sum]}}]}

  ``a`` is the older annotation, ``annotator`` the Label Studio user id (``null``: unknown).
  Reading a record rebuilds each pair's quality from ``per_class``, averaged exactly as
  :mod:`ls_panoptic.agreement` averages it; ``pq``, ``sq`` and ``rq`` are there for the totals
  and for a reader of Redis.
- totals (the project's ``agreement_totals`` hash): ``pairs`` (int) and ``pq_sum`` (float)
  over every record, changed by each record write in its transaction: ``/metrics`` reads two
  numbers, never the records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.client import Pipeline

from ls_panoptic.agreement import PairQuality
from ls_panoptic.comparisons import Comparison, Side
from ls_panoptic.pq import ClassCounts, average

from ._store_base import StoreBase
from ._store_codec import StoreError, dumps, text

__all__ = ["AgreementIndex", "TaskAgreement", "decode_agreement", "encode_agreement"]


@dataclass(frozen=True)
class TaskAgreement:
    """One task's compared pairs and the stuff class ids they were compared with."""

    comparisons: Sequence[Comparison]
    stuff: frozenset[int]


def _pair(comparison: Comparison) -> dict[str, Any]:
    quality = comparison.quality
    return {
        "a": [comparison.a.annotation_id, comparison.a.annotator],
        "b": [comparison.b.annotation_id, comparison.b.annotator],
        "pq": quality.overall.pq,
        "sq": quality.overall.sq,
        "rq": quality.overall.rq,
        "per_class": {
            str(c.class_id): [c.tp, c.fp, c.fn, c.iou_sum] for c in quality.per_class.values()
        },
    }


def encode_agreement(agreement: TaskAgreement) -> str:
    """The JSON text of a task's record (``ValueError`` for a value JSON cannot hold)."""
    first = agreement.comparisons[0]
    return dumps(
        {
            "image": first.image,
            "stuff": sorted(agreement.stuff),
            "pairs": [_pair(c) for c in agreement.comparisons],
        }
    )


def _quality(per_class: dict[int, ClassCounts], stuff: frozenset[int]) -> PairQuality:
    overall = average(per_class.values())
    if overall is None:
        raise ValueError("a pair without a class present")
    return PairQuality(
        per_class=per_class,
        overall=overall,
        things=average(c for c in per_class.values() if c.class_id not in stuff),
        stuff=average(c for c in per_class.values() if c.class_id in stuff),
    )


def decode_agreement(where: str, task_id: int, raw: bytes | str) -> TaskAgreement:
    """The record stored as ``raw`` for ``task_id``.

    Raises:
        StoreError: not an agreement record.
    """
    try:
        data = json.loads(raw)
        stuff = frozenset(int(c) for c in data["stuff"])
        comparisons = []
        for pair in data["pairs"]:
            per_class = {
                int(k): ClassCounts(int(k), int(tp), int(fp), int(fn), float(iou))
                for k, (tp, fp, fn, iou) in sorted(pair["per_class"].items(), key=_by_id)
            }
            a, b = (Side(*pair[side]) for side in ("a", "b"))
            quality = _quality(per_class, stuff)
            comparisons.append(Comparison(task_id, str(data["image"]), a, b, quality))
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"{where}: agreement record is unreadable ({exc!r})") from exc
    return TaskAgreement(comparisons, stuff)


def _by_id(item: tuple[str, Any]) -> int:
    return int(item[0])


def _contribution(raw: bytes | str | None) -> tuple[int, float]:
    """``(pairs, sum of their PQ)`` of a stored record; nothing for an unreadable one (its
    removal must not fail, and it was never counted right)."""
    if raw is None:
        return 0, 0.0
    try:
        pairs = json.loads(raw)["pairs"]
        return len(pairs), float(sum(float(p["pq"]) for p in pairs))
    except (KeyError, ValueError, TypeError):
        return 0, 0.0


class AgreementIndex(StoreBase):
    """Agreement records and totals (a part of :class:`worker.store.Store`)."""

    def agreement(self, project: int) -> tuple[list[Comparison], frozenset[int]]:
        """Every stored pair of the project, by task, and the stuff class ids they used.

        Raises:
            StoreError: a record is unreadable.
        """
        where = self._keys.agreement(project)
        comparisons: list[Comparison] = []
        stuff: set[int] = set()
        stored = self._redis.hgetall(where)
        for task, raw in sorted(stored.items(), key=lambda item: int(item[0])):
            record = decode_agreement(f"{where}[{text(task)}]", int(task), raw)
            comparisons.extend(record.comparisons)
            stuff.update(record.stuff)
        return comparisons, frozenset(stuff)

    def agreement_mean(self, project: int) -> tuple[float, int] | None:
        """``(mean PQ over pairs, pairs)`` from the running totals; ``None`` without a pair."""
        raw = self._redis.hmget(self._keys.agreement_totals(project), ["pairs", "pq_sum"])
        pairs, pq_sum = (text(v) for v in raw)
        if pairs is None or int(pairs) <= 0:
            return None
        return float(pq_sum or 0.0) / int(pairs), int(pairs)

    def _agreement_before(self, pipe: Pipeline, project: int, task_ids: list[int]) -> list[Any]:
        """The stored records of ``task_ids`` (immediate mode, before ``pipe.multi()``)."""
        return list(pipe.hmget(self._keys.agreement(project), [str(t) for t in task_ids]))

    def _queue_agreement(
        self,
        pipe: Pipeline,
        project: int,
        records: dict[int, TaskAgreement | None],
        before: Iterable[Any],
    ) -> None:
        """Queue: each task's record replaced (``None`` or no pair: removed), totals adjusted
        by the difference from the records ``before`` (:meth:`_agreement_before`)."""
        where = self._keys.agreement(project)
        pairs, pq_sum = 0, 0.0
        for raw in before:
            gone = _contribution(raw)
            pairs, pq_sum = pairs - gone[0], pq_sum - gone[1]
        for task_id, record in records.items():
            if record is None or not record.comparisons:
                pipe.hdel(where, str(task_id))
                continue
            encoded = encode_agreement(record)
            pipe.hset(where, str(task_id), encoded)
            added = _contribution(encoded)
            pairs, pq_sum = pairs + added[0], pq_sum + added[1]
        if pairs or pq_sum:
            totals = self._keys.agreement_totals(project)
            pipe.hincrby(totals, "pairs", pairs)
            pipe.hincrbyfloat(totals, "pq_sum", pq_sum)

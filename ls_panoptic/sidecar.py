"""The sidecar JSON beside every snapshot, and how a task left out of a snapshot is described.

One builder for the batch conversion (``convert``) and the live store's snapshot, so the two
sidecars of one project agree, failures (image-key collisions included) too. Format
``ls-panoptic/1``::

    format         "ls-panoptic/1"
    created_at     when the snapshot was taken (UTC, ISO 8601, seconds)
    ...            what the producer adds: batch ``source``, ``options``, ``warnings``;
                   live ``project``
    id2label       {"<class id>": label}, by class id
    background_id  the class id of the label spelled ``background`` (any case); null if none
    entries        {image key: provenance} of every entry in the snapshot
    failures       [{"task_id", "key", "message"}] by task id: the tasks with a usable
                   annotation that the snapshot leaves out (``key``: the image key the task
                   would have had, null when unknown), and why: task, region and reason in
                   the same words for every front end, without a remedy
                   (:mod:`ls_panoptic.errors`)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ImageError, KeyCollisionError
from .labels import BACKGROUND

__all__ = [
    "FORMAT",
    "Failure",
    "build_sidecar",
    "failure_message",
    "key_collisions",
    "utc_seconds",
]

FORMAT = "ls-panoptic/1"


@dataclass(frozen=True)
class Failure:
    """One task left out of a snapshot: its image key when known, and why (the sidecar's
    record; the batch's :class:`~ls_panoptic.batch.BatchFailure` adds the remedy)."""

    task_id: int | None
    key: str | None
    message: str


def failure_message(task_id: int | None, exc: Exception) -> str:
    """The sidecar's words for ``task_id`` failing with ``exc``: the task once, the region
    when one is at fault, the reason (the same whoever converted it; no remedy)."""
    if isinstance(exc, ImageError):
        return str(exc.in_task(task_id))  # the task boundary, for an error raised without one
    return f"task {task_id}: {exc}"


def key_collisions(keys: Sequence[tuple[int | None, str | None]]) -> dict[int, Failure]:
    """The failures of image-key collisions, by position in ``keys`` (``(task id, image key)``
    pairs; ``None``: no key): every task whose key another one has too leaves the snapshot,
    naming the others in the order given. The one rule of batch and live snapshots alike."""
    owners: dict[str, list[int]] = {}
    for n, (_task_id, key) in enumerate(keys):
        if key is not None:
            owners.setdefault(key, []).append(n)
    found: dict[int, Failure] = {}
    for key, places in owners.items():
        if len(places) < 2:
            continue
        ids = [keys[n][0] for n in places]
        for n in places:
            own = keys[n][0]
            found[n] = _collision(own, key, [t for t in ids if t != own])
    return found


def _collision(task_id: int | None, key: str, others: Sequence[int | None]) -> Failure:
    """``task_id`` shares the image ``key`` with ``others``: all of them leave the snapshot."""
    return Failure(task_id, key, str(KeyCollisionError(task_id, key, others)))


def build_sidecar(
    id2label: Mapping[int, str],
    entries: Mapping[str, Any],
    failures: Iterable[Failure],
    *,
    created_at: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar of a snapshot holding ``entries`` (image key -> provenance) and leaving out
    ``failures``; ``extra`` holds what one producer adds (see module doc)."""
    background = [k for k, label in sorted(id2label.items()) if label.lower() == BACKGROUND]
    # by task id (unknown ids last), so batch and live list one project's failures alike
    ordered = sorted(failures, key=lambda f: (f.task_id is None, f.task_id or 0))
    return {
        "format": FORMAT,
        "created_at": created_at or utc_seconds(),
        **extra,
        "id2label": {str(k): v for k, v in sorted(id2label.items())},
        "background_id": background[0] if background else None,
        "entries": dict(entries),
        "failures": [{"task_id": f.task_id, "key": f.key, "message": f.message} for f in ordered],
    }


def utc_seconds() -> str:
    """Now, UTC, ISO 8601 to the second (a snapshot's ``created_at``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")

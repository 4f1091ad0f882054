"""Many tasks' states written in one transaction (a resync converting from the task listing).

:meth:`worker.store.Store.put_outcomes` stores what :func:`worker.outcome.task_outcome` made of
many tasks with the rules of ``put_entry``, ``mark_empty`` and ``record_error`` (a state made
from an older Label Studio state never replaces a newer one, tombstones count as states, the
superseded blobs expire after the grace period, failures leave the manifest, agreement records
go with their states), in a few round trips for the whole batch instead of several per task:
one ``WATCH``, one read of each hash for all the batch's fields, one ``MULTI``/``EXEC``.

Entries are encoded (:func:`worker._store_codec.encode_entry`) when the write is made
(:meth:`TaskWrite.of`), so a conversion may reuse its buffers for the next task at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from redis.client import Pipeline

from ls_panoptic.sidecar import Failure

from ._store_agreement import TaskAgreement
from ._store_base import utc_now
from ._store_codec import EntryState, decode_state, encode_entry, text
from .store import MAX_ERROR_CHARS, Store, _newer, _stamp, _tombstone

if TYPE_CHECKING:
    from .outcome import Outcome

__all__ = ["TaskWrite", "write_batch"]


@dataclass(frozen=True)
class TaskWrite:
    """One task's new state, ready to store (its entry encoded)."""

    task_id: int
    observed: str
    status: Literal["ok", "empty", "error"]
    config_hash: str | None = None
    key: str | None = None
    annotation_id: int | None = None
    version: str | None = None
    fields: dict[str, bytes | str | int] = field(default_factory=dict)
    message: str = ""
    fingerprint: str | None = None
    remedy: str | None = None
    agreement: TaskAgreement | None = None
    annotation_ids: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, outcome: Outcome, observed: str, config_hash: str) -> TaskWrite:
        """The write of ``outcome``, pulled or listed at ``observed`` (ISO, the Redis clock).

        Raises:
            ValueError: the entry cannot be stored (the task is named).
        """
        common = {
            "task_id": outcome.task_id, "observed": observed, "agreement": outcome.agreement,
            "annotation_ids": list(outcome.annotation_ids),
        }  # fmt: skip
        if outcome.status == "ok" and outcome.entry is not None:
            entry = outcome.entry
            try:
                version, fields = encode_entry(entry, observed, outcome.image_url)
            except ValueError as exc:
                raise ValueError(f"task {outcome.task_id}: {exc}") from None
            annotation = entry.meta.get("annotation_id")
            return cls(
                status="ok", config_hash=config_hash, key=entry.key, version=version,
                fields=fields, annotation_id=annotation if isinstance(annotation, int) else None,
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
        if outcome.status == "error":
            return cls(
                status="error", key=outcome.key, message=outcome.message,
                fingerprint=outcome.fingerprint, remedy=outcome.remedy,
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
        return cls(status="empty", **common)  # type: ignore[arg-type]


def write_batch(store: Store, project: int, writes: list[TaskWrite]) -> list[bool]:
    """Store ``writes`` (distinct tasks) in one optimistic transaction; per write, ``False``
    when a newer state was stored (see module doc)."""
    if not writes:
        return []
    keys = store._keys
    manifest, states, tombstones = (
        keys.manifest(project),
        keys.states(project),
        keys.deleted(project),
    )
    agreement = keys.agreement(project)
    fields = [str(w.task_id) for w in writes]
    index = {
        str(a): f"{project}:{w.task_id}" for w in writes for a in w.annotation_ids
    }  # the ANNOTATIONS_DELETED index, as sync_task keeps it

    def body(pipe: Pipeline) -> list[bool]:
        raw_states = pipe.hmget(states, fields)
        raw_deleted = pipe.hmget(tombstones, fields)
        currents = [text(v) for v in pipe.hmget(manifest, fields)]
        olds: list[EntryState | None] = []
        for write, raw, deleted in zip(writes, raw_states, raw_deleted, strict=True):
            old = decode_state(f"{states}[{write.task_id}]", raw) if raw is not None else None
            if old is None and deleted is not None:
                old = _tombstone(write.task_id, str(text(deleted)))
            olds.append(old)
        stored = [not _newer(old, _stamp(w.observed)) for w, old in zip(writes, olds, strict=True)]
        taken = [w.task_id for w, ok in zip(writes, stored, strict=True) if ok]
        before = store._agreement_before(pipe, project, taken) if taken else []
        pipe.multi()
        for write, old, current, ok in zip(writes, olds, currents, stored, strict=True):
            if ok:
                _queue(store, pipe, project, write, old, current)
        if taken:
            records = {w.task_id: w.agreement for w, ok in zip(writes, stored, strict=True) if ok}
            store._queue_agreement(pipe, project, records, before)
        if index:
            pipe.hset(keys.annotations(), mapping=index)  # type: ignore[arg-type]
        return stored

    return store._transact([manifest, states, tombstones, agreement], body)


def _queue(
    store: Store,
    pipe: Pipeline,
    project: int,
    write: TaskWrite,
    old: EntryState | None,
    current: str | None,
) -> None:
    """Queue one write: what ``put_entry``, ``mark_empty`` or ``record_error`` queues."""
    task_id = write.task_id
    if write.status == "ok":
        assert write.version is not None
        blob = store._keys.blob(project, task_id, write.version)
        state = EntryState(
            task_id, write.key, write.annotation_id, write.observed, "ok", None, utc_now(),
            write.config_hash,
        )  # fmt: skip
        pipe.hset(blob, mapping=write.fields)  # type: ignore[arg-type]
        pipe.persist(blob)
        store._point(pipe, project, task_id, current, write.version, state, old)
    elif write.status == "empty":
        state = EntryState(task_id, None, None, write.observed, "empty", None, utc_now())
        store._point(pipe, project, task_id, current, None, state, old)
    else:
        failure = Failure(task_id, write.key, write.message[:MAX_ERROR_CHARS])
        state = EntryState(
            task_id, old.key if old else None, old.annotation_id if old else None,
            write.observed, "error", failure.message, utc_now(),
            old.config_hash if old else None, write.fingerprint,
            current or (old.stale_version if old else None), write.remedy,
        )  # fmt: skip
        if current is not None:
            pipe.hdel(store._keys.manifest(project), str(task_id))
        store._put_state(pipe, project, state, old, failure)

"""The write rules of a task's state, in one place: every state write of the store goes
through :func:`write_batch`, one task (``Store.put_entry``, ``mark_empty``, ``record_error``) or
many (``Store.put_outcomes``: a resync converting from the task listing).

The rules: a state made from an older Label Studio state (``source_updated_at``, compared as
instants, not strings) never replaces a newer one, an equal one does; a tombstone counts as a
state; a failure without a timestamp (the task could not be fetched) keeps the stored stamp and
records nothing for a deleted task; the blobs a write supersedes expire after the grace period;
a failure leaves the manifest and enters the failures; agreement records go with their states;
status counts and the review index follow every state. A batch costs a few round trips however
many tasks it holds: one ``WATCH``, one read of each hash for all its fields, one
``MULTI``/``EXEC``.

Entries are encoded (:func:`worker._store_codec.encode_entry`) when the write is made
(:meth:`TaskWrite.ok`, :meth:`TaskWrite.of`), so a conversion may reuse its buffers for the next
task at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from redis.client import Pipeline

from ls_panoptic.model import Entry
from ls_panoptic.sidecar import Failure
from ls_panoptic.tasks import parse_timestamp

from ._store_agreement import TaskAgreement
from ._store_base import utc_now
from ._store_codec import (
    EntryState,
    decode_state,
    encode_entry,
    encode_failure,
    encode_state,
    text,
)
from .review_index import queue_reindex

if TYPE_CHECKING:
    from .outcome import Outcome
    from .store import Store

__all__ = ["MAX_ERROR_CHARS", "TaskWrite", "deletion_time", "source_stamp", "write_batch"]

MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class TaskWrite:
    """One task's new state, ready to store (its entry encoded)."""

    task_id: int
    observed: str | None  # None: a failure without a timestamp (see module doc)
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
    def ok(
        cls,
        task_id: int,
        entry: Entry,
        observed: str,
        config_hash: str | None = None,
        agreement: TaskAgreement | None = None,
        image_url: str | None = None,
        annotation_ids: list[int] | None = None,
    ) -> TaskWrite:
        """``entry`` becomes the task's current entry (arguments: ``Store.put_entry``).

        Raises:
            ValueError: a bad timestamp, or an entry that cannot be stored (the task is named).
        """
        source_stamp(observed)
        try:
            version, fields = encode_entry(entry, observed, image_url)
        except ValueError as exc:
            raise ValueError(f"task {task_id}: {exc}") from None
        annotation = entry.meta.get("annotation_id")
        return cls(
            task_id, observed, "ok", config_hash, entry.key,
            annotation if isinstance(annotation, int) else None, version, fields,
            agreement=agreement, annotation_ids=annotation_ids or [],
        )  # fmt: skip

    @classmethod
    def empty(
        cls,
        task_id: int,
        observed: str,
        agreement: TaskAgreement | None = None,
        annotation_ids: list[int] | None = None,
    ) -> TaskWrite:
        """The task has no usable annotation (``Store.mark_empty``).

        Raises:
            ValueError: a bad timestamp.
        """
        source_stamp(observed)
        return cls(
            task_id, observed, "empty", agreement=agreement, annotation_ids=annotation_ids or []
        )

    @classmethod
    def error(
        cls,
        task_id: int,
        message: str,
        observed: str | None,
        fingerprint: str | None = None,
        key: str | None = None,
        remedy: str | None = None,
        agreement: TaskAgreement | None = None,
        annotation_ids: list[int] | None = None,
    ) -> TaskWrite:
        """The task failed to convert (arguments: ``Store.record_error``).

        Raises:
            ValueError: a bad timestamp.
        """
        if observed is not None:
            source_stamp(observed)
        return cls(
            task_id, observed, "error", key=key, message=message, fingerprint=fingerprint,
            remedy=remedy, agreement=agreement, annotation_ids=annotation_ids or [],
        )  # fmt: skip

    @classmethod
    def of(cls, outcome: Outcome, observed: str, config_hash: str) -> TaskWrite:
        """The write of ``outcome``, pulled or listed at ``observed`` (ISO, the Redis clock).

        Raises:
            ValueError: a bad timestamp, or an entry that cannot be stored (the task is named).
        """
        task_id, ids, agreement = outcome.task_id, list(outcome.annotation_ids), outcome.agreement
        if outcome.status == "ok" and outcome.entry is not None:
            return cls.ok(
                task_id, outcome.entry, observed, config_hash, agreement, outcome.image_url, ids
            )
        if outcome.status == "error":
            return cls.error(
                task_id, outcome.message, observed, outcome.fingerprint, outcome.key,
                outcome.remedy, agreement, ids,
            )  # fmt: skip
        return cls.empty(task_id, observed, agreement, ids)


def write_batch(store: Store, project: int, writes: list[TaskWrite]) -> list[bool]:
    """Store ``writes`` (distinct tasks) in one optimistic transaction; per write, ``False``
    when it was refused by the rules (a newer state stored; see module doc)."""
    if not writes:
        return []
    for write in writes:  # refused before anything is read or written
        if write.observed is not None:
            source_stamp(write.observed)
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
                old = tombstone(write.task_id, str(text(deleted)))
            olds.append(old)
        stored = [_accepts(w, old) for w, old in zip(writes, olds, strict=True)]
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


def _accepts(write: TaskWrite, old: EntryState | None) -> bool:
    """Whether ``write`` may replace the stored state ``old`` (see module doc)."""
    if write.observed is None:  # a failed fetch: nothing to record for a deleted task
        return old is None or old.status != "deleted"
    return not newer(old, source_stamp(write.observed))


def _queue(
    store: Store,
    pipe: Pipeline,
    project: int,
    write: TaskWrite,
    old: EntryState | None,
    current: str | None,
) -> None:
    """Queue one accepted write: its blob, manifest, state, failure, counts and index."""
    task_id = write.task_id
    if write.status == "ok":
        assert write.version is not None and write.observed is not None
        blob = store._keys.blob(project, task_id, write.version)
        state = EntryState(
            task_id, write.key, write.annotation_id, write.observed, "ok", None, utc_now(),
            write.config_hash,
        )  # fmt: skip
        pipe.hset(blob, mapping=write.fields)  # type: ignore[arg-type]
        pipe.persist(blob)  # the same conversion again may revive a superseded blob
        _point(store, pipe, project, task_id, current, write.version, state, old)
    elif write.status == "empty":
        state = EntryState(task_id, None, None, write.observed, "empty", None, utc_now())
        _point(store, pipe, project, task_id, current, None, state, old)
    else:
        failure = Failure(task_id, write.key, write.message[:MAX_ERROR_CHARS])
        state = EntryState(
            task_id, old.key if old else None, old.annotation_id if old else None,
            write.observed or (old.updated_at if old else None), "error", failure.message,
            utc_now(), old.config_hash if old else None, write.fingerprint,
            current or (old.stale_version if old else None), write.remedy,
        )  # fmt: skip
        if current is not None:  # out of snapshots; kept (not expired) for review
            pipe.hdel(store._keys.manifest(project), str(task_id))
        _put_state(store, pipe, project, state, old, failure)


def _point(
    store: Store,
    pipe: Pipeline,
    project: int,
    task_id: int,
    current: str | None,
    version: str | None,
    state: EntryState,
    old: EntryState | None,
) -> None:
    """Queue: manifest -> ``version`` (or none), the superseded blobs expire (current, or
    the stale one a failure kept), the state replacing ``old``."""
    keys, where = store._keys, str(task_id)
    if version is None:
        pipe.hdel(keys.manifest(project), where)
    else:
        pipe.hset(keys.manifest(project), where, version)
    for superseded in {current, old.stale_version if old else None} - {version, None}:
        pipe.expire(keys.blob(project, task_id, str(superseded)), store.grace_seconds)
    _put_state(store, pipe, project, state, old)


def _put_state(
    store: Store,
    pipe: Pipeline,
    project: int,
    state: EntryState,
    old: EntryState | None,
    failure: Failure | None = None,
) -> None:
    """Queue: ``state`` replaces ``old`` (a tombstone is no state, and goes), counted
    (``Store.status_counts``); the task's ``failure`` (given for an ``error`` only) replaces
    its listed one, if any."""
    keys, where = store._keys, str(state.task_id)
    pipe.hset(keys.states(project), where, encode_state(state))
    if failure is None:
        pipe.hdel(keys.failures(project), where)
    else:
        pipe.hset(keys.failures(project), where, encode_failure(failure))
    pipe.hdel(keys.deleted(project), where)
    pipe.sadd(keys.projects(), project)
    before = old.status if old is not None and old.status != "deleted" else None
    if before != state.status:
        counts = keys.status_counts(project)
        if before is not None:
            pipe.hincrby(counts, before, -1)
        pipe.hincrby(counts, state.status, 1)
    queue_reindex(pipe, keys, project, [state.task_id])  # the review page's index


def source_stamp(value: str) -> dt.datetime:
    """A Label Studio or Redis-clock ISO 8601 time as an instant.

    Raises:
        ValueError: ``value`` is not one (named).
    """
    try:
        return parse_timestamp(value)
    except (ValueError, AttributeError):
        raise ValueError(f"source_updated_at {value!r} is not an ISO 8601 timestamp") from None


def newer(state: EntryState | None, stamp: dt.datetime) -> bool:
    """Whether the stored state was made from a strictly newer Label Studio state."""
    if state is None or not state.updated_at:
        return False
    try:
        return parse_timestamp(state.updated_at) > stamp
    except ValueError:
        return False  # an unreadable stored stamp must not block repairs


def deletion_time(raw: str | None) -> dt.datetime | None:
    """A tombstone's time; ``None`` when it is unreadable (it must not block repairs)."""
    try:
        return source_stamp(raw) if raw else None
    except ValueError:
        return None


def tombstone(task_id: int, raw: str) -> EntryState:
    """A deleted task's stand-in state (``updated_at`` None when its time is unreadable)."""
    deleted = deletion_time(raw)
    stamp = deleted.isoformat() if deleted else None
    return EntryState(task_id, None, None, stamp, "deleted", None, "")

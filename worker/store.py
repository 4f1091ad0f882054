"""The live store: converted entries, task states and project records in Redis.

Every write of a task's state is one ``MULTI``/``EXEC`` under ``WATCH`` of the project's manifest
and states (run again when another writer got there first), made by :mod:`worker._store_batch`,
which owns the write rules: one task's write is a batch of one. It writes an immutable blob (format:
:mod:`worker._store_codec`), points the manifest at it, and ``EXPIRE``\\ s the blob it supersedes
after ``grace_seconds``, so a snapshot in progress still reads what it pinned. A state made from
an older Label Studio state (``source_updated_at``, compared as instants, not strings) never
replaces a newer one; an equal one does (a rebuild under a new label config). A deleted task
leaves a tombstone (the time it was known gone) that counts as its state until a newer one
replaces it, so a sync that pulled the task just before the delete cannot bring it back; resyncs
forget tombstones after a day. Nothing read from Redis is unpickled: it holds JSON text and
zstd bytes only.

Live = batch, also on failure: a task whose latest conversion failed leaves the manifest (so
every snapshot leaves it out, as ``convert`` does) and enters the project's ``failures`` (which
snapshots list), in the same transaction as its state. Its last good blob stays, unexpiring, as
the state's ``stale_version`` for ``/entries`` and previews, until the task's next state.

A task's agreement record (its pairs' PQ: :mod:`worker._store_agreement`) is written with its
state, in the same transaction, and goes with it: every state write replaces it (none given:
removed), and a delete removes it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from typing import Any, BinaryIO

from redis.client import Pipeline

from ls_panoptic.model import Entry

from . import _store_snapshot
from ._store_agreement import AgreementIndex, TaskAgreement
from ._store_base import DEFAULT_GRACE_SECONDS
from ._store_batch import TaskWrite, deletion_time, source_stamp, write_batch
from ._store_codec import (
    EntryState,
    StoredEntry,
    StoreError,
    decode_entry,
    decode_state,
    peek_state,
    text,
)
from ._store_projects import ProjectIndex, ProjectRecord, config_hash
from ._store_snapshot import SnapshotInfo
from .review_index import queue_reindex

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "EntryState",
    "ProjectRecord",
    "SnapshotInfo",
    "Store",
    "StoreError",
    "StoredEntry",
    "TaskAgreement",
    "config_hash",
]


class Store(ProjectIndex, AgreementIndex):
    """Entries and states of Label Studio projects in one Redis database.

    ``Store(redis, keys, grace_seconds=3600)``: ``redis`` must return bytes
    (``decode_responses=False``). Project records and the annotation index: see
    :class:`worker._store_projects.ProjectIndex`; agreement records:
    :class:`worker._store_agreement.AgreementIndex`.
    """

    def put_entry(
        self,
        project: int,
        task_id: int,
        entry: Entry,
        source_updated_at: str,
        config_hash: str | None = None,
        agreement: TaskAgreement | None = None,
        image_url: str | None = None,
    ) -> bool:
        """Make ``entry`` the task's current entry; ``False`` when a newer state is stored.

        ``config_hash`` names the label config it was converted with (see ``EntryState``);
        ``agreement`` replaces the task's agreement record (``None``: removed); ``image_url``:
        the task's image URL, kept with the entry for snapshots that embed the photo.

        Raises:
            ValueError: a bad timestamp, or an entry that cannot be stored (the task is named).
        """
        write = TaskWrite.ok(task_id, entry, source_updated_at, config_hash, agreement, image_url)
        return self.put_outcomes(project, [write])[0]

    def put_outcomes(self, project: int, writes: list[TaskWrite]) -> list[bool]:
        """Store many tasks' new states at once, by the rules of :meth:`put_entry`,
        :meth:`mark_empty` and :meth:`record_error` (all of them write through here); per
        write, ``False`` when a newer state is stored. See :mod:`worker._store_batch`."""
        return write_batch(self, project, writes)

    def get_entry(self, project: int, task_id: int) -> StoredEntry | None:
        """The task's entry (its mask a fresh ``uint32`` array), or ``None``: the current one,
        else, while its latest conversion fails, its last good one (``stale``).

        Raises:
            StoreError: the stored entry is unreadable.
        """
        blob, field = "", str(task_id)
        for _attempt in range(3):  # the task may move on between the reads
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(self._keys.manifest(project), field)
                pipe.hget(self._keys.states(project), field)
                current, state = pipe.execute()
            kept = peek_state(state)[1] if current is None and state is not None else None
            version = text(current) or kept
            if version is None:
                return None
            blob = self._keys.blob(project, task_id, version)
            fields = self._redis.hgetall(blob)
            if fields:
                return decode_entry(blob, fields, stale=kept is not None)  # type: ignore[arg-type]
        raise StoreError(f"{blob}: the manifest points at a missing blob")

    def mark_empty(self, project: int, task_id: int, source_updated_at: str) -> bool:
        """The task has no usable annotation: drop its entry (and agreement), state ``empty``.

        ``False`` when a newer state is stored.
        """
        return self.put_outcomes(project, [TaskWrite.empty(task_id, source_updated_at)])[0]

    def record_error(
        self,
        project: int,
        task_id: int,
        message: str,
        source_updated_at: str | None,
        fingerprint: str | None = None,
        key: str | None = None,
        remedy: str | None = None,
        agreement: TaskAgreement | None = None,
    ) -> None:
        """The task failed to convert: state ``error``, listed by snapshots (as ``key``: the
        image key the failed conversion was for, ``None`` when unknown) instead of its entry;
        its last good entry stays for review (``stale_version``; see module doc).

        Ignored when a newer state is stored. Without a timestamp (the task could not even be
        fetched) the stored one is kept, so a stale success cannot slip in afterwards.
        ``fingerprint``: what a failure that only a change of the task can mend failed on
        (``EntryState.error_fingerprint``); ``None`` for one a retry may mend. ``remedy``:
        what an operator could change (``EntryState.remedy``). ``agreement`` replaces the
        task's agreement record (``None``: removed): the other annotations may still compare.
        """
        write = TaskWrite.error(
            task_id, message, source_updated_at, fingerprint, key, remedy, agreement
        )
        self.put_outcomes(project, [write])

    def delete_tasks(self, project: int, task_ids: Iterable[int], deleted_at: str) -> int:
        """Forget these tasks (entries, states, agreement, annotation index); returns how many
        were known.

        ``deleted_at`` (ISO, the Redis clock): a time by which the tasks were gone from Label
        Studio. It is kept as a tombstone: a state pulled before it (a sync that fetched the task
        just before the delete and stores just after) is refused like any older state, while a
        newer one (Label Studio on SQLite reuses task ids) replaces the tombstone.
        """
        source_stamp(deleted_at)
        ids = sorted({int(t) for t in task_ids})
        if not ids:
            return 0
        manifest, states = self._keys.manifest(project), self._keys.states(project)
        tombstones, agreement = self._keys.deleted(project), self._keys.agreement(project)
        fields = [str(t) for t in ids]

        def delete(pipe: Pipeline) -> int:
            versions = [text(v) for v in pipe.hmget(manifest, fields)]
            recorded = [peek_state(raw) if raw is not None else None
                        for raw in pipe.hmget(states, fields)]  # fmt: skip
            gone = Counter(peeked[0] for peeked in recorded if peeked is not None)
            before = self._agreement_before(pipe, project, ids)
            pipe.multi()
            self._queue_agreement(pipe, project, dict.fromkeys(ids), before)
            for where in (manifest, states, self._keys.failures(project)):
                pipe.hdel(where, *fields)
            queue_reindex(pipe, self._keys, project, ids)  # the review page's index
            for status, count in gone.items():
                pipe.hincrby(self._keys.status_counts(project), status, -count)
            pipe.hset(tombstones, mapping=dict.fromkeys(fields, deleted_at))
            for task_id, version, peeked in zip(ids, versions, recorded, strict=True):
                for blob in (version, peeked[1] if peeked else None):  # current, or kept
                    if blob is not None:
                        pipe.expire(self._keys.blob(project, task_id, blob), self.grace_seconds)
            return sum(
                v is not None or p is not None for v, p in zip(versions, recorded, strict=True)
            )

        count = self._transact([manifest, states, tombstones, agreement], delete)
        targets = {f"{project}:{t}" for t in ids}
        self._forget_annotations_where(lambda where: where in targets)
        return count

    def task_ids(self, project: int) -> set[int]:
        """Tasks with a state record."""
        return {int(t) for t in self._redis.hkeys(self._keys.states(project))}

    def entry_count(self, project: int) -> int:
        """How many tasks have a current entry (the manifest's size: ``/metrics``)."""
        return int(self._redis.hlen(self._keys.manifest(project)))

    def status_counts(self, project: int) -> dict[str, int]:
        """How many of the project's tasks have each status (``ok``, ``empty``, ``error``; an
        unreadable record counts as ``unreadable``), without reading the states: every state
        write keeps the counts. Recounted from the states when they disagree with their number
        (a store written before the counts existed, or states written around the store)."""
        counts_key, states = self._keys.status_counts(project), self._keys.states(project)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(counts_key)
            pipe.hlen(states)
            raw, total = pipe.execute()
        counts = {str(text(k)): int(v) for k, v in raw.items()}
        if all(v >= 0 for v in counts.values()) and sum(counts.values()) == total:
            return {status: n for status, n in sorted(counts.items()) if n > 0}

        def recount(pipe: Pipeline) -> dict[str, int]:
            found = Counter(peek_state(value)[0] for value in pipe.hvals(states))
            pipe.multi()
            pipe.delete(counts_key)
            if found:
                pipe.hset(counts_key, mapping=dict(found))  # type: ignore[arg-type]
            return dict(sorted(found.items()))

        return self._transact([states, counts_key], recount)

    def states(self, project: int) -> list[EntryState]:
        """Every task's state record, by task id.

        Raises:
            StoreError: a record is unreadable.
        """
        where = self._keys.states(project)
        found = [decode_state(where, raw) for raw in self._redis.hgetall(where).values()]
        return sorted(found, key=lambda s: s.task_id)

    def state_page(
        self, project: int, after: int, limit: int
    ) -> tuple[list[EntryState], int | None, int]:
        """Up to ``limit`` state records of tasks with an id above ``after``, by task id; the
        last id when more follow (the next page's ``after``), else ``None``; and how many
        states the project has. Reads the task ids and ``limit`` records, not every record.

        Raises:
            StoreError: a record is unreadable.
        """
        where = self._keys.states(project)
        ids = sorted(t for t in map(int, self._redis.hkeys(where)) if t > after)
        chosen = ids[:limit]
        raws = self._redis.hmget(where, [str(t) for t in chosen]) if chosen else []
        found = [decode_state(where, raw) for raw in raws if raw is not None]
        total = int(self._redis.hlen(where))
        return found, chosen[-1] if len(ids) > limit else None, total

    def write_snapshot(self, project: int, file: BinaryIO) -> SnapshotInfo:
        """Write the project's entries, as they are at the call, to ``file``: one plain pickle.

        Point-in-time, one entry in memory at a time: see :mod:`worker._store_snapshot`.
        ``file`` is neither flushed nor closed; it holds a complete pickle only on success.

        Raises:
            StoreError: the snapshot outlived the grace period, or an entry is unreadable.
        """
        return _store_snapshot.write_snapshot(self._redis, self._keys, project, file)

    def stream_snapshot(self, info: SnapshotInfo) -> tuple[int, Generator[bytes, None, None]]:
        """``(byte length, chunks)`` of the pickle :meth:`write_snapshot` would write for the
        pinned ``info`` (:meth:`pin_snapshot`), streamed in bounded memory. See
        :func:`worker._store_snapshot.stream_snapshot`.

        Raises:
            StoreError: the snapshot outlived the grace period, or an entry is unreadable (the
                chunks stop short of the announced length then).
        """
        size = _store_snapshot.snapshot_size(self._redis, self._keys, info)
        return size, _store_snapshot.stream_snapshot(self._redis, self._keys, info)

    def pin_snapshot(self, project: int) -> SnapshotInfo:
        """What a snapshot of the project taken now holds (nothing decoded yet): pass it to
        :meth:`snapshot_entries`. See :mod:`worker._store_snapshot`."""
        return _store_snapshot.pin_snapshot(self._redis, self._keys, project)

    def snapshot_entries(self, info: SnapshotInfo) -> Iterator[tuple[int, StoredEntry]]:
        """``(task id, entry)`` of the entries ``info`` pinned, one decoded at a time, in the
        pickle's order.

        Raises:
            StoreError: the snapshot outlived the grace period, or an entry is unreadable.
        """
        return _store_snapshot.snapshot_entries(self._redis, self._keys, info)

    def snapshot_meta(self, project: int, info: SnapshotInfo | None = None) -> dict[str, Any]:
        """The sidecar JSON of ``info``'s snapshot, or of the project as it is now."""
        record = self.get_project(project)
        id2label = record.id2label if record else {}
        return _store_snapshot.snapshot_meta(self._redis, self._keys, project, id2label, info)

    def forget_tombstones(self, project: int, before: str) -> int:
        """Drop the tombstones of tasks deleted before ``before`` (ISO): no sync job that pulled
        a task before its deletion can still be running then. Returns how many went."""
        limit, where = source_stamp(before), self._keys.deleted(project)
        old = [
            task
            for task, raw in self._redis.hgetall(where).items()
            if (deleted := deletion_time(text(raw))) is None or deleted < limit
        ]
        return int(self._redis.hdel(where, *old)) if old else 0

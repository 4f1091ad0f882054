"""The review page's index: what ``GET /projects/<id>/review`` queries, server-side.

Per project (keys: :meth:`worker.keys.Keys.review_prefix`): a HASH of one compact JSON row per
task (status, error, image key, whether the entry shown is stale, annotator, annotation time,
instances per class, entry version, number of warnings), ZSETs of the task ids by id and by the
time of their latest change, a SET of task ids per status, class present and annotator, counts
of each, and a change log (task id -> sequence number) that the page polls for live updates.

Kept in the SAME transactions as the store's state writes: the store queues :func:`queue_reindex`
after every state write and delete (``worker.store``), a Lua script that reads the task's state,
its manifest version and its blob's ``inst2class`` and ``meta`` (never the mask) server-side and
updates every structure, so the index can never disagree with the states. The script is
idempotent, which also builds the index lazily: a store written before it existed is indexed by
the first query (:meth:`ReviewIndex.ensure_built`, one pass over the states, 4-8 s per 100,000
tasks), and :meth:`ReviewIndex.rebuild` redoes it from scratch on demand (``ls-panoptic resync
--rebuild``). While one process builds it, every read by the others raises
:class:`IndexBuilding` with the progress (the page shows "indexing N of M"), never a partly
built index.

Queries (:meth:`ReviewIndex.query`): filters (status, class present, annotator, changed since)
intersect their SETs with the sort ZSET (``ZINTERSTORE`` into a short-lived scratch key), then
one ``ZRANGE`` pages it; cost grows with the filtered sets, never with reading rows.
:meth:`ReviewIndex.position` places one task in such a list (its rank and neighbours: the
detail view's next and previous task in the list the grid showed).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline

from .keys import Keys

__all__ = [
    "SORTS",
    "Changes",
    "IndexBuilding",
    "Page",
    "Position",
    "ReviewIndex",
    "Row",
    "queue_reindex",
]

#: sort orders of the grid: by task id, or by the time of the latest change
SORTS = ("task", "changed")
#: changes kept in the log; a page further behind reloads
CHANGES_KEPT = 10_000
_BUILD_BATCH = 500
_SCRATCH_TTL_S = 30
#: the build lock's lifetime, renewed after every batch: a builder that died frees it soon
_BUILD_LOCK_S = 60

# Every structure of the index for the tasks ARGV[6:], from what the store holds now.
# ARGV: review prefix, states, manifest, blob key prefix ("...:blob:"), failures, task ids...
_REINDEX = """
local rp, states, manifest, blobp, failures = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rows = rp .. 'rows'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local function value(v) if v == cjson.null then return nil end return v end
local function int(v) return string.format('%d', v) end
local function decode(raw)
  if not raw then return nil end
  local ok, data = pcall(cjson.decode, raw)
  if ok and type(data) == 'table' then return data end
  return nil
end
local function tags(row)
  local found = {{'status', row.s}}
  if row.stale then found[#found + 1] = {'status', 'stale'} end
  if row.s == 'ok' or row.stale then found[#found + 1] = {'annotator', row.a or '-'} end
  for class_id, _ in pairs(row.c or {}) do found[#found + 1] = {'class', class_id} end
  return found
end
local function row_of(task)
  local state = decode(redis.call('HGET', states, task))
  if not state then
    if redis.call('HEXISTS', states, task) == 1 then return {s = 'unreadable'} end
    return nil
  end
  local status = value(state.status)
  if type(status) ~= 'string' or not string.match(status, '^[%w_-]+$') then
    return {s = 'unreadable'}
  end
  local row = {s = status, e = value(state.error), k = value(state.key),
               u = value(state.converted_at)}
  if not row.k and status == 'error' then  -- a task that never converted: the failure's key
    local failure = decode(redis.call('HGET', failures, task))
    if failure then row.k = value(failure.key) end
  end
  local version = redis.call('HGET', manifest, task)
  local stale = value(state.stale_version)
  if not version and status == 'error' and type(stale) == 'string' then
    version = stale
    row.stale = true
  end
  if version then
    local blob = redis.call('HMGET', blobp .. task .. ':' .. version, 'inst2class', 'meta')
    local inst2class, meta = decode(blob[1]), decode(blob[2])
    if inst2class then
      row.v = version
      local counts = {}
      for _, class_id in pairs(inst2class) do
        local c = int(class_id)
        counts[c] = (counts[c] or 0) + 1
      end
      row.c = counts
    else
      row.stale = nil
    end
    if meta then
      local who = value(meta.completed_by)
      if type(who) == 'number' then row.a = int(who) end
      row.t = value(meta.updated_at)
      local warnings = value(meta.warnings)
      if type(warnings) == 'table' then row.w = #warnings end
    end
  end
  return row
end
for i = 6, #ARGV do
  local task = ARGV[i]
  local before = redis.call('HGET', rows, task)
  local old, row = decode(before), row_of(task)
  if old then
    for _, tag in ipairs(tags(old)) do
      redis.call('SREM', rp .. tag[1] .. ':' .. tag[2], task)
      if redis.call('HINCRBY', rp .. 'counts:' .. tag[1], tag[2], -1) <= 0 then
        redis.call('HDEL', rp .. 'counts:' .. tag[1], tag[2])
      end
    end
  end
  if row then
    for _, tag in ipairs(tags(row)) do
      redis.call('SADD', rp .. tag[1] .. ':' .. tag[2], task)
      redis.call('HINCRBY', rp .. 'counts:' .. tag[1], tag[2], 1)
    end
    redis.call('HSET', rows, task, cjson.encode(row))
    redis.call('ZADD', rp .. 'order:task', tonumber(task), task)
    redis.call('ZADD', rp .. 'order:changed', now, task)
  else
    redis.call('HDEL', rows, task)
    redis.call('ZREM', rp .. 'order:task', task)
    redis.call('ZREM', rp .. 'order:changed', task)
  end
  if row or before then
    local seq = redis.call('INCR', rp .. 'seq')
    redis.call('ZADD', rp .. 'changes', seq, task)
  end
end
redis.call('ZREMRANGEBYRANK', rp .. 'changes', 0, -(@KEPT@ + 1))
return 1
""".replace("@KEPT@", str(CHANGES_KEPT))


# Drops the index under the review prefix ARGV[1] (its sequence number, build lock and scratch
# keys aside) atomically: the sets the counts name, the counts, rows, orders, change log and
# built mark, and the keys ARGV[2:] (found by a scan before).
_CLEAR = """
local rp = ARGV[1]
for _, what in ipairs({'status', 'class', 'annotator'}) do
  local counts = rp .. 'counts:' .. what
  for _, name in ipairs(redis.call('HKEYS', counts)) do
    redis.call('DEL', rp .. what .. ':' .. name)
  end
  redis.call('DEL', counts)
end
for _, name in ipairs({'rows', 'order:task', 'order:changed', 'changes', 'built'}) do
  redis.call('DEL', rp .. name)
end
for i = 2, #ARGV do redis.call('DEL', ARGV[i]) end
return 1
"""


def _script_args(keys: Keys, project: int, task_ids: Iterable[int]) -> list[str]:
    ids = [str(int(t)) for t in task_ids]
    blob_prefix = keys.project_prefix(project) + "blob:"
    return [keys.review_prefix(project), keys.states(project), keys.manifest(project),
            blob_prefix, keys.failures(project), *ids]  # fmt: skip


def queue_reindex(pipe: Pipeline, keys: Keys, project: int, task_ids: Sequence[int]) -> None:
    """Queue (in the store's ``MULTI``) the re-indexing of ``task_ids`` from what the store
    holds once the transaction's earlier writes ran: their rows, sets, counts and change log."""
    if task_ids:
        pipe.eval(_REINDEX, 0, *_script_args(keys, project, task_ids))


@dataclass(frozen=True)
class Row:
    """One task of the grid.

    Attributes:
        status: ``ok``, ``empty``, ``error`` (or ``unreadable`` for a corrupt state record).
        stale: an ``error`` whose last good entry is shown (``version``), marked stale.
        classes: ``{class id: instances}`` of the entry shown (none: ``{}``).
        annotator: Label Studio user id of the annotation used (``None``: unknown).
        annotated_at: that annotation's ``updated_at`` (ISO), ``None`` when unknown.
        converted_at: when the store recorded the task's state (ISO).
        version: the entry blob shown (thumbnail cache key), ``None`` without an entry.
        warnings: how many warnings the conversion left.
    """

    task_id: int
    status: str
    error: str | None = None
    key: str | None = None
    stale: bool = False
    classes: dict[int, int] = field(default_factory=dict)
    annotator: str | None = None
    annotated_at: str | None = None
    converted_at: str | None = None
    version: str | None = None
    warnings: int = 0

    @classmethod
    def decode(cls, task_id: int, raw: bytes | str) -> Row:
        data: dict[str, Any] = json.loads(raw)
        classes = data.get("c") or {}
        return cls(
            task_id=task_id,
            status=str(data.get("s", "unreadable")),
            error=data.get("e"),
            key=data.get("k"),
            stale=bool(data.get("stale")),
            classes={int(k): int(v) for k, v in sorted(classes.items(), key=lambda i: int(i[0]))},
            annotator=data.get("a"),
            annotated_at=data.get("t"),
            converted_at=data.get("u"),
            version=data.get("v"),
            warnings=int(data.get("w") or 0),
        )

    def as_json(self) -> dict[str, Any]:
        """The row for the page's JavaScript (class ids as strings: JSON object keys)."""
        return {
            "task_id": self.task_id, "status": self.status, "error": self.error,
            "key": self.key, "stale": self.stale,
            "classes": {str(k): v for k, v in self.classes.items()},
            "annotator": self.annotator, "annotated_at": self.annotated_at,
            "converted_at": self.converted_at, "version": self.version,
            "warnings": self.warnings,
        }  # fmt: skip


@dataclass(frozen=True)
class Page:
    """One page of the grid, and the counts of the whole project for its header.

    Attributes:
        total: how many tasks pass the filters.
        status_counts / class_counts / annotator_counts: over the whole project (unfiltered).
        seq: the change log's sequence number when the page was read (the live cursor).
    """

    rows: list[Row]
    total: int
    status_counts: dict[str, int]
    class_counts: dict[int, int]
    annotator_counts: dict[str, int]
    seq: int


@dataclass(frozen=True)
class Changes:
    """What changed after a cursor: the rows now (``gone``: tasks no longer indexed).
    ``reload``: the cursor is older than the kept log, so the page should reload."""

    seq: int
    rows: list[Row]
    gone: list[int]
    reload: bool = False
    #: more tasks changed than asked for (a resync, an import): their number, and no rows
    many: int = 0


class IndexBuilding(Exception):
    """Another process is building the index of the project: ``done`` of ``total`` tasks are
    indexed so far (the page says so instead of showing a partly built index)."""

    def __init__(self, project: int, done: int, total: int) -> None:
        super().__init__(f"the review index of project {project} is being built: {done} of {total}")
        self.project, self.done, self.total = project, done, total


@dataclass(frozen=True)
class Position:
    """Where a task stands in the grid's filtered, sorted list (the detail view's keyboard).

    Attributes:
        before / after: the previous and next task ids in that list (``None``: none).
        rank: the task's place in the list from 0, in the order shown; where it would stand
            when it does not pass the filters (``listed`` false).
        total: how many tasks pass the filters.
    """

    before: int | None
    after: int | None
    rank: int
    listed: bool
    total: int


class ReviewIndex:
    """Reads (and lazily builds) the review index of one store's Redis database."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self._redis = redis_client
        self._keys = keys

    def ensure_built(self, project: int) -> bool:
        """Index every state of ``project`` unless that was done (and the index still has one
        row per state: a project dropped from the store leaves rows behind); ``True`` if it
        ran now.

        Safe while the store writes: each task's re-indexing reads what is stored at that
        instant, as every state write's own re-indexing does.

        Raises:
            IndexBuilding: another process is building it; its rows are not to be shown yet.
        """
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._keys.review_building(project))
            pipe.exists(self._keys.review_built(project))
            pipe.hlen(self._keys.states(project))
            pipe.hlen(self._keys.review_rows(project))
            building, built, states, rows = pipe.execute()
        if building is not None:
            raise IndexBuilding(project, *_progress(building))
        if built and states == rows:  # one row per state, written in the same transactions
            return False
        self.rebuild(project)
        return True

    def progress(self, project: int) -> tuple[int, int] | None:
        """``(done, total)`` of the build under way, ``None`` when none is."""
        found = self._redis.get(self._keys.review_building(project))
        return None if found is None else _progress(found)

    def rebuild(self, project: int, on_batch: Callable[[int, int], None] | None = None) -> int:
        """Index ``project`` from scratch: drop its index (the change log's sequence number
        excepted: open pages' cursors stay behind it, so they reload), then re-index every
        task that has a state; returns how many. Meanwhile other processes get
        :class:`IndexBuilding` with the progress; ``on_batch(done, total)`` after each batch.

        Raises:
            IndexBuilding: another process is building it already.
        """
        building = self._keys.review_building(project)
        if not self._redis.set(building, "0/0", nx=True, ex=_BUILD_LOCK_S):
            raise IndexBuilding(project, *(self.progress(project) or (0, 0)))
        try:
            self._clear(project)
            ids = sorted(int(t) for t in self._redis.hkeys(self._keys.states(project)))
            self._redis.set(building, f"0/{len(ids)}", ex=_BUILD_LOCK_S)
            for start in range(0, len(ids), _BUILD_BATCH * 20):
                with self._redis.pipeline(transaction=False) as pipe:
                    for at in range(start, min(len(ids), start + _BUILD_BATCH * 20), _BUILD_BATCH):
                        queue_reindex(pipe, self._keys, project, ids[at : at + _BUILD_BATCH])
                    done = min(len(ids), start + _BUILD_BATCH * 20)
                    pipe.set(building, f"{done}/{len(ids)}", ex=_BUILD_LOCK_S)
                    pipe.execute()
                if on_batch is not None:
                    on_batch(done, len(ids))
            self._redis.set(self._keys.review_built(project), "1")
        finally:
            self._redis.delete(building)
        return len(ids)

    def _clear(self, project: int) -> None:
        """Delete the index of ``project`` but its build lock, sequence number and the
        scratch keys of queries under way, in one script: every set the counts name (a state
        write between the scan and the deletion may have made a new one) and every key the
        scan found (strays of a damaged index)."""
        k = self._keys
        kept = {k.review_building(project), k.review_seq(project)}
        scratch = k.review_prefix(project) + "scratch:"
        found = self._redis.scan_iter(k.review_prefix(project) + "*", count=1000)
        strays = [
            key for key in map(_text, found) if key not in kept and not key.startswith(scratch)
        ]
        self._redis.eval(_CLEAR, 0, k.review_prefix(project), *strays)

    def query(
        self,
        project: int,
        *,
        status: str | None = None,
        class_id: int | None = None,
        annotator: str | None = None,
        changed_since: float | None = None,
        sort: str = "task",
        descending: bool = False,
        offset: int = 0,
        limit: int = 60,
    ) -> Page:
        """One page of rows passing every filter given (``changed_since``: Unix time).

        Raises:
            IndexBuilding: another process is building the index.
        """
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        self.ensure_built(project)
        k = self._keys
        with self._redis.pipeline(transaction=True) as pipe:
            source, scratch = self._queue_filter(
                pipe, project, status, class_id, annotator, changed_since, sort
            )
            queued = len(pipe)
            pipe.zcard(source)
            pipe.zrange(source, offset, offset + limit - 1, desc=descending)
            pipe.hgetall(k.review_counts(project, "status"))
            pipe.hgetall(k.review_counts(project, "class"))
            pipe.hgetall(k.review_counts(project, "annotator"))
            pipe.get(k.review_seq(project))
            if scratch:
                pipe.delete(*scratch)
            replies = pipe.execute()[queued : queued + 6]
        total, ids, statuses, classes, annotators, seq = replies
        return Page(
            rows=self.rows(project, [int(t) for t in ids]),
            total=int(total),
            status_counts=_counts(statuses, str),
            class_counts=_counts(classes, int),
            annotator_counts=_counts(annotators, str),
            seq=int(seq or 0),
        )

    def position(
        self,
        project: int,
        task_id: int,
        *,
        status: str | None = None,
        class_id: int | None = None,
        annotator: str | None = None,
        changed_since: float | None = None,
        sort: str = "task",
        descending: bool = False,
    ) -> Position | None:
        """Where ``task_id`` stands in the list :meth:`query` pages with these filters, and
        its neighbours there; ``None`` when the task is not indexed.

        Raises:
            IndexBuilding: another process is building the index.
        """
        self.ensure_built(project)
        member = str(int(task_id))
        score = self._redis.zscore(self._keys.review_order(project, sort), member)
        if score is None:
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            source, scratch = self._queue_filter(
                pipe, project, status, class_id, annotator, changed_since, sort
            )
            pipe.zcard(source)
            total = int(pipe.execute()[-1])
        try:
            # the filtered list is this request's own copy: the task joins it to be placed
            listed = not scratch or not self._redis.zadd(source, {member: score})
            found: Any = (self._redis.zrevrank if descending else self._redis.zrank)(source, member)
            if found is None:  # deleted meanwhile (only the unfiltered list is shared)
                return None
            rank = int(found)
            around: Any = self._redis.zrange(source, max(0, rank - 1), rank + 1, desc=descending)
            near = [int(t) for t in around]
        finally:
            if scratch:
                self._redis.delete(*scratch)
        at = near.index(task_id) if task_id in near else 0
        before = near[at - 1] if at > 0 else None
        after = near[at + 1] if at + 1 < len(near) else None
        return Position(before, after, rank, listed, total)

    def _queue_filter(
        self,
        pipe: Pipeline,
        project: int,
        status: str | None,
        class_id: int | None,
        annotator: str | None,
        changed_since: float | None,
        sort: str,
    ) -> tuple[str, list[str]]:
        """Queue what makes the ZSET of the tasks passing the filters, scored by ``sort``;
        returns its key and the scratch keys to delete (none: the sort order itself)."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        k = self._keys
        order = k.review_order(project, sort)
        sets = []
        if status is not None:
            sets.append(k.review_status(project, status))
        if class_id is not None:
            sets.append(k.review_class(project, class_id))
        if annotator is not None:
            sets.append(k.review_annotator(project, annotator))
        if not sets and changed_since is None:
            return order, []
        source = k.review_scratch(project, secrets.token_hex(8))
        scratch = [source]
        if changed_since is not None:
            since = k.review_scratch(project, secrets.token_hex(8))
            pipe.zrangestore(since, k.review_order(project, "changed"),
                             f"({changed_since!r}", "+inf", byscore=True)  # fmt: skip
            pipe.expire(since, _SCRATCH_TTL_S)
            sets.append(since)
            scratch.append(since)
        pipe.zinterstore(source, {order: 1, **dict.fromkeys(sets, 0)})
        pipe.expire(source, _SCRATCH_TTL_S)
        return source, scratch

    def rows(self, project: int, task_ids: Sequence[int]) -> list[Row]:
        """The rows of ``task_ids`` that are indexed, in that order."""
        if not task_ids:
            return []
        raw = self._redis.hmget(self._keys.review_rows(project), [str(t) for t in task_ids])
        return [Row.decode(t, r) for t, r in zip(task_ids, raw, strict=True) if r is not None]

    def row(self, project: int, task_id: int) -> Row | None:
        """One task's row, ``None`` when it is not indexed."""
        self.ensure_built(project)
        found = self.rows(project, [task_id])
        return found[0] if found else None

    def changes(self, project: int, since: int, limit: int = CHANGES_KEPT) -> Changes:
        """Rows changed after the sequence number ``since``; more than ``limit``: only their
        number (``Changes.many``).

        Raises:
            IndexBuilding: another process is building the index.
        """
        self.ensure_built(project)
        log, seq_key = self._keys.review_changes(project), self._keys.review_seq(project)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(seq_key)
            pipe.zcard(log)
            pipe.zrange(log, 0, 0, withscores=True)
            pipe.zrange(log, f"({since}", "+inf", byscore=True)
            seq, size, oldest, ids = pipe.execute()
        current = int(seq or 0)
        if since > current:  # the index was rebuilt from scratch, or a cursor from elsewhere
            return Changes(current, [], [], reload=True)
        trimmed = size >= CHANGES_KEPT and oldest and int(oldest[0][1]) > since
        if trimmed:  # the log may no longer go back that far
            return Changes(current, [], [], reload=True)
        if len(ids) > limit:
            return Changes(current, [], [], many=len(ids))
        tasks = sorted(int(t) for t in ids)
        found = self.rows(project, tasks)
        present = {r.task_id for r in found}
        return Changes(current, found, [t for t in tasks if t not in present])


def _first_id(found: Any) -> int | None:
    return int(found[0]) if found else None


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _progress(raw: bytes | str) -> tuple[int, int]:
    """``(done, total)`` from the build lock's value ``done/total``."""
    done, _, total = _text(raw).partition("/")
    try:
        return int(done), int(total or 0)
    except ValueError:
        return 0, 0


def _counts(raw: dict[bytes, bytes], kind: type[Any]) -> dict[Any, int]:
    found = {kind(k.decode()): int(v) for k, v in raw.items() if int(v) > 0}
    return dict(sorted(found.items()))

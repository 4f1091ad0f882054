"""Per-project status counts (``/metrics``' ``ls_panoptic_tasks``) kept by every state write
against a real Redis: the counts hash itself is checked, not only ``Store.status_counts``,
which would recount and so hide a write that forgot them."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import redis

from ls_panoptic.model import Entry
from worker.keys import Keys
from worker.store import Store

P = 4
T0, T1, T2, T3 = (f"2024-05-01T10:00:0{n}Z" for n in range(4))


def entry(task_id: int) -> Entry:
    mask = np.ones((6, 8), dtype=np.uint32)
    mask[2:4, 2:5] = 2
    meta = {"task_id": task_id, "annotation_id": 100 + task_id}
    return Entry(f"img{task_id}.png", mask, {1: 3, 2: 0}, meta)


def kept(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The counts hash as the writes left it (statuses with a count of 0 left out)."""
    raw = client.hgetall(keys.status_counts(P))
    return {k.decode(): int(v) for k, v in raw.items() if int(v) != 0}


def recorded(store: Store) -> dict[str, int]:
    return dict(Counter(state.status for state in store.states(P)))


def test_every_state_write_keeps_the_counts(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    for task_id in (1, 2, 3):
        assert store.put_entry(P, task_id, entry(task_id), T1)
    assert kept(redis_client, keys) == {"ok": 3}
    assert store.mark_empty(P, 2, T2)
    store.record_error(P, 3, "task 3: broken", T2)
    assert kept(redis_client, keys) == {"ok": 1, "empty": 1, "error": 1}
    store.record_error(P, 3, "task 3: broken again", T3)  # error -> error: no change
    assert store.put_entry(P, 2, entry(2), T3)  # empty -> ok
    assert kept(redis_client, keys) == {"ok": 2, "error": 1} == recorded(store)
    assert store.status_counts(P) == {"error": 1, "ok": 2}


def test_a_refused_older_state_changes_no_count(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    assert store.put_entry(P, 1, entry(1), T2)
    assert not store.mark_empty(P, 1, T1)  # older than the stored state
    store.record_error(P, 1, "stale failure", T0)
    assert kept(redis_client, keys) == {"ok": 1} == recorded(store)


def test_deletes_and_tombstones_keep_the_counts(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    for task_id in (1, 2):
        assert store.put_entry(P, task_id, entry(task_id), T1)
    store.record_error(P, 3, "task 3: broken", T1)
    assert store.delete_tasks(P, [1, 3, 99], T2) == 2
    assert kept(redis_client, keys) == {"ok": 1} == recorded(store)
    assert not store.put_entry(P, 1, entry(1), T1)  # pulled before the delete: refused
    assert store.put_entry(P, 1, entry(1), T3)  # a newer task with the reused id
    assert kept(redis_client, keys) == {"ok": 2} == recorded(store)
    store.drop_project(P)
    assert redis_client.exists(keys.status_counts(P)) == 0
    assert store.status_counts(P) == {}


def test_a_store_without_counts_is_recounted_once(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """States written before the counts existed (or around the store) are recounted, an
    unreadable record under ``unreadable``, and the counts are kept from then on."""
    assert store.put_entry(P, 1, entry(1), T1)
    redis_client.delete(keys.status_counts(P))
    old = {"task_id": 2, "key": None, "annotation_id": None, "updated_at": T1,
           "status": "empty", "error": None, "converted_at": T1}  # fmt: skip
    redis_client.hset(keys.states(P), mapping={"2": json.dumps(old), "3": b"\x00not json"})
    assert store.status_counts(P) == {"empty": 1, "ok": 1, "unreadable": 1}
    assert kept(redis_client, keys) == {"empty": 1, "ok": 1, "unreadable": 1}
    assert store.put_entry(P, 2, entry(2), T2)
    assert kept(redis_client, keys) == {"ok": 2, "unreadable": 1}

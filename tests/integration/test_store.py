"""The Redis store against a real Redis: round trips, ordering, concurrency, snapshots."""

from __future__ import annotations

import io
import json
import pickle
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis.client import Pipeline

from ls_panoptic.model import Entry
from worker.keys import Keys
from worker.store import Store, StoredEntry, StoreError

P = 3  # project id used throughout
T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:00:01.5Z", "2024-05-01T10:05:00Z"


def make_entry(
    key: str, seed: int, shape: tuple[int, int] = (60, 80), n: int = 6, offset: int = 0
) -> Entry:
    """A mask of rectangles (ids ``offset+1..``) over background, like a real composition."""
    rng = np.random.default_rng(seed)
    height, width = shape
    mask = np.full(shape, offset + 1, dtype=np.uint32)
    for instance in range(offset + 2, offset + n + 1):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        bottom = top + rng.integers(2, max(3, height // 3))
        right = left + rng.integers(2, max(3, width // 3))
        mask[top:bottom, left:right] = instance
    ids = [int(i) for i in np.unique(mask)]
    inst2class = {i: (i % 4) if i != offset + 1 else 4 for i in ids}
    meta = {"task_id": seed, "annotation_id": 100 + seed, "warnings": [], "regions": {"brush": n}}
    return Entry(key=key, panoptic_mask=mask, inst2class=inst2class, meta=meta)


def blob_versions(client: redis.Redis, keys: Keys, task_id: int) -> dict[str, int]:
    """version -> TTL of every stored blob of ``task_id`` (-1: persistent)."""
    prefix = keys.blob(P, task_id, "0")[:-1]
    found = client.scan_iter(match=keys.blob_pattern(P))
    return {
        k.decode()[len(prefix) :]: int(client.ttl(k))
        for k in found
        if k.decode().startswith(prefix)
    }


def assert_same_entry(got: Any, want: Entry) -> None:
    assert got.key == want.key
    mask = got.panoptic_mask
    assert mask.dtype == np.uint32 and mask.flags.c_contiguous and mask.flags.writeable
    assert mask is not want.panoptic_mask
    np.testing.assert_array_equal(mask, want.panoptic_mask)
    assert got.inst2class == want.inst2class
    assert all(type(k) is int and type(v) is int for k, v in got.inst2class.items())
    assert got.meta == want.meta


def assert_stored(store: Store, task_id: int, want: Entry) -> StoredEntry:
    """The store holds ``want`` for ``task_id`` (see ``assert_same_entry``); returns it."""
    got = store.get_entry(P, task_id)
    assert got is not None
    assert_same_entry(got, want)
    return got


# -- entries ---------------------------------------------------------------------------------


def test_put_and_get_round_trip_narrowed_to_uint16(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    entry = make_entry("a.jpg", seed=1)
    assert store.put_entry(P, 10, entry, T0)
    got = assert_stored(store, 10, entry)
    assert got.source_updated_at == T0
    (version,) = blob_versions(redis_client, keys, 10)
    fields = redis_client.hgetall(keys.blob(P, 10, version))
    assert fields[b"dtype"] == b"uint16"
    assert (fields[b"height"], fields[b"width"]) == (b"60", b"80")
    assert fields[b"mask"][:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert json.loads(fields[b"inst2class"]) == {str(k): v for k, v in entry.inst2class.items()}
    assert store.get_entry(P, 11) is None


def test_ids_above_uint16_are_stored_as_uint32(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    entry = make_entry("big-ids.png", seed=2, offset=70_000)
    store.put_entry(P, 10, entry, T0)
    (version,) = blob_versions(redis_client, keys, 10)
    assert redis_client.hget(keys.blob(P, 10, version), "dtype") == b"uint32"
    assert_stored(store, 10, entry)


def test_other_integer_mask_dtypes_come_back_as_uint32(store: Store) -> None:
    entry = make_entry("u8.png", seed=3)
    entry.panoptic_mask = entry.panoptic_mask.astype(np.uint8)
    store.put_entry(P, 10, entry, T0)
    got = store.get_entry(P, 10)
    assert got is not None and got.panoptic_mask.dtype == np.uint32
    np.testing.assert_array_equal(got.panoptic_mask, entry.panoptic_mask)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: setattr(e, "panoptic_mask", np.zeros((2, 3, 4), np.uint32)), "2-D integer"),
        (lambda e: setattr(e, "panoptic_mask", np.zeros((0, 5), np.uint32)), "non-empty"),
        (lambda e: setattr(e, "panoptic_mask", np.full((2, 2), 0.5)), "integer array"),
        (lambda e: setattr(e, "panoptic_mask", np.full((2, 2), -1, np.int32)), "0..2\\*\\*32-1"),
        (lambda e: e.meta.update(count=np.int64(3)), "not JSON"),
    ],
)
def test_unstorable_entries_are_refused_naming_the_task(
    store: Store, change: Callable[[Entry], None], message: str
) -> None:
    entry = make_entry("bad.png", seed=4)
    change(entry)
    with pytest.raises(ValueError, match=f"task 10: .*{message}"):
        store.put_entry(P, 10, entry, T0)
    assert store.task_ids(P) == set()


def test_a_bad_timestamp_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="source_updated_at 'yesterday'"):
        store.put_entry(P, 10, make_entry("a.jpg", 1), "yesterday")


def test_older_state_never_replaces_newer_comparing_instants_not_strings(store: Store) -> None:
    newer, older = make_entry("a.jpg", seed=1), make_entry("a.jpg", seed=2)
    assert store.put_entry(P, 10, newer, "2024-05-01T09:00:00Z")
    # As a string "10:00+02:00" sorts after "09:00Z"; as an instant it is 08:00Z: older.
    assert not store.put_entry(P, 10, older, "2024-05-01T10:00:00+02:00")
    assert_stored(store, 10, newer)
    assert store.put_entry(P, 10, older, "2024-05-01T09:00:00.000001Z")
    assert_stored(store, 10, older)


def test_an_equal_timestamp_replaces_the_entry(store: Store) -> None:
    # a rebuild under a new label config converts the same Label Studio state again
    store.put_entry(P, 10, make_entry("a.jpg", seed=1), T0)
    rebuilt = make_entry("a.jpg", seed=9)
    assert store.put_entry(P, 10, rebuilt, T0)
    assert_stored(store, 10, rebuilt)


def test_superseded_blobs_expire_after_the_grace_period(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    first, second = make_entry("a.jpg", seed=1), make_entry("a.jpg", seed=2)
    store.put_entry(P, 10, first, T0)
    (v1,) = blob_versions(redis_client, keys, 10)
    store.put_entry(P, 10, first, T0)  # the same conversion: the same blob, still current
    assert blob_versions(redis_client, keys, 10) == {v1: -1}
    store.put_entry(P, 10, second, T1)
    ttls = blob_versions(redis_client, keys, 10)
    (v2,) = set(ttls) - {v1}
    assert ttls[v2] == -1 and 0 < ttls[v1] <= 600
    store.put_entry(P, 10, first, T2)  # first's pixels from a newer state: a new version
    ttls = blob_versions(redis_client, keys, 10)
    (v3,) = set(ttls) - {v1, v2}
    assert ttls[v3] == -1 and ttls[v1] > 0 and ttls[v2] > 0


def test_a_superseded_blob_that_becomes_current_again_stops_expiring(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    first, second = make_entry("a.jpg", seed=1), make_entry("a.jpg", seed=2)
    store.put_entry(P, 10, first, T0)
    (v1,) = blob_versions(redis_client, keys, 10)
    store.put_entry(P, 10, second, T0)
    assert blob_versions(redis_client, keys, 10)[v1] > 0
    store.put_entry(P, 10, first, T0)  # back to the identical first blob
    ttls = blob_versions(redis_client, keys, 10)
    (v2,) = set(ttls) - {v1}
    assert ttls[v1] == -1 and ttls[v2] > 0
    assert_stored(store, 10, first)


def test_mark_empty_drops_the_entry_and_blocks_older_states(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    store.put_entry(P, 10, make_entry("a.jpg", seed=1), T0)
    assert store.mark_empty(P, 10, T1)
    assert store.get_entry(P, 10) is None
    assert all(ttl > 0 for ttl in blob_versions(redis_client, keys, 10).values())
    (state,) = store.states(P)
    assert (state.task_id, state.status, state.key, state.updated_at) == (10, "empty", None, T1)
    assert not store.put_entry(P, 10, make_entry("a.jpg", seed=2), T0)
    assert not store.mark_empty(P, 10, T0)
    assert store.put_entry(P, 10, make_entry("a.jpg", seed=2), T2)


def test_record_error_keeps_the_last_good_entry_as_stale(store: Store) -> None:
    good = make_entry("a.jpg", seed=1)
    store.put_entry(P, 10, good, T0)
    store.record_error(P, 10, "task 10: region r1: polygon: fewer than 3 points", T1)
    assert assert_stored(store, 10, good).stale  # for review only: see test_failed_tasks.py
    (state,) = store.states(P)
    assert (state.status, state.key, state.annotation_id, state.updated_at) == (
        "error",
        "a.jpg",
        101,
        T1,
    )
    assert state.error == "task 10: region r1: polygon: fewer than 3 points"
    assert not store.put_entry(P, 10, make_entry("a.jpg", seed=2), T0)  # older than the error


def test_an_older_error_is_ignored(store: Store) -> None:
    store.put_entry(P, 10, make_entry("a.jpg", seed=1), T1)
    store.record_error(P, 10, "stale job failed", T0)
    (state,) = store.states(P)
    assert (state.status, state.error, state.updated_at) == ("ok", None, T1)


def test_an_error_without_timestamp_keeps_the_stored_one(store: Store) -> None:
    store.put_entry(P, 10, make_entry("a.jpg", seed=1), T1)
    store.record_error(P, 10, "Label Studio unavailable", None)
    (state,) = store.states(P)
    assert (state.status, state.updated_at) == ("error", T1)
    assert not store.put_entry(P, 10, make_entry("a.jpg", seed=2), T0)
    store.record_error(P, 11, "task 11 could not be fetched", None)
    assert store.task_ids(P) == {10, 11}


def test_an_error_keeps_its_fingerprint_until_the_next_state(store: Store) -> None:
    fingerprint = "annotation 5 updated 2024-05-01T10:00:00+00:00; inputs 00ff"
    store.record_error(P, 10, "task 10: region r1: label 'weed' is not in the label set", T0,
                       fingerprint)  # fmt: skip
    (state,) = store.states(P)
    assert (state.status, state.error_fingerprint) == ("error", fingerprint)
    store.record_error(P, 10, "reading image: Label Studio answered 503", T1)  # may pass
    (state,) = store.states(P)
    assert (state.status, state.error_fingerprint) == ("error", None)
    store.record_error(P, 10, "the same failure again", T1, fingerprint)
    assert store.put_entry(P, 10, make_entry("a.jpg", seed=1), T2)
    (state,) = store.states(P)
    assert (state.status, state.error_fingerprint) == ("ok", None)


def test_a_state_record_written_before_the_fingerprint_field_still_decodes(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    older = {"task_id": 10, "key": "a.jpg", "annotation_id": 5, "updated_at": T0,
             "status": "error", "error": "task 10: boom", "converted_at": T0,
             "config_hash": None}  # fmt: skip
    redis_client.hset(keys.states(P), "10", json.dumps(older))
    (state,) = store.states(P)
    assert (state.status, state.error, state.error_fingerprint) == ("error", "task 10: boom", None)
    oldest = {k: v for k, v in older.items() if k != "config_hash"} | {"task_id": 11}
    redis_client.hset(keys.states(P), "11", json.dumps(oldest))
    assert [s.error_fingerprint for s in store.states(P)] == [None, None]
    store.record_error(P, 10, "task 10: boom", T1, "annotation 5 updated x; inputs 00")
    first, _second = store.states(P)
    assert first.error_fingerprint == "annotation 5 updated x; inputs 00"


def test_delete_tasks(store: Store, redis_client: redis.Redis, keys: Keys) -> None:
    for task_id in (10, 11, 12):
        store.put_entry(P, task_id, make_entry(f"{task_id}.jpg", task_id), T0)
        store.index_annotations(P, task_id, [task_id * 10, task_id * 10 + 1])
    store.mark_empty(P, 13, T0)
    assert store.delete_tasks(P, [10, 13, 13, 99], T1) == 2
    assert store.task_ids(P) == {11, 12}
    assert store.get_entry(P, 10) is None
    assert all(ttl > 0 for ttl in blob_versions(redis_client, keys, 10).values())
    assert store.task_for_annotation(100) is None and store.task_for_annotation(101) is None
    assert store.task_for_annotation(110) == (P, 11)
    assert store.delete_tasks(P, [], T1) == 0


def test_a_pull_older_than_the_delete_cannot_bring_the_task_back(store: Store) -> None:
    """A sync that pulled the task (T0) before it was deleted (T1) stores after the delete: its
    entry, empty state or error must not resurrect the task."""
    store.put_entry(P, 10, make_entry("a.jpg", seed=1), T0)
    store.delete_tasks(P, [10], T1)
    assert not store.put_entry(P, 10, make_entry("a.jpg", seed=2), T0)
    assert not store.mark_empty(P, 10, T0)
    store.record_error(P, 10, "late failure", T0)
    store.record_error(P, 10, "could not fetch", None)
    assert store.get_entry(P, 10) is None and store.task_ids(P) == set()


def test_a_newer_pull_replaces_the_tombstone(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """Label Studio on SQLite reuses the ids of deleted tasks: a task pulled after the delete
    is a new task and is stored; its tombstone goes."""
    store.delete_tasks(P, [10], T1)
    assert store.put_entry(P, 10, make_entry("b.jpg", seed=3), T2)
    entry = store.get_entry(P, 10)
    assert entry is not None and entry.key == "b.jpg"
    assert redis_client.hlen(keys.deleted(P)) == 0
    store.delete_tasks(P, [11], T1)
    store.record_error(P, 11, "new task 11 failed", T2)
    assert [s.status for s in store.states(P) if s.task_id == 11] == ["error"]


def test_old_tombstones_are_forgotten(store: Store, redis_client: redis.Redis, keys: Keys) -> None:
    store.delete_tasks(P, [10], T0)
    store.delete_tasks(P, [11], T2)
    redis_client.hset(keys.deleted(P), "12", "not a time")
    assert store.forget_tombstones(P, T1) == 2  # task 10's, and the unreadable one
    assert not store.put_entry(P, 11, make_entry("c.jpg", seed=4), T1)  # 11's still stands
    assert store.put_entry(P, 10, make_entry("d.jpg", seed=5), T0)


def test_states_are_sorted_by_task_id(store: Store) -> None:
    for task_id in (30, 4, 12):
        store.put_entry(P, task_id, make_entry(f"{task_id}.jpg", task_id), T0)
    assert [s.task_id for s in store.states(P)] == [4, 12, 30]
    assert {s.status for s in store.states(P)} == {"ok"}
    assert store.states(P + 1) == []


def test_annotation_index(store: Store, redis_client: redis.Redis, keys: Keys) -> None:
    store.index_annotations(P, 10, [501, 502])
    store.index_annotations(P + 1, 20, [601])
    assert store.task_for_annotation(501) == (P, 10)
    assert store.task_for_annotation(601) == (P + 1, 20)
    store.forget_annotations([501, 999])
    assert store.task_for_annotation(501) is None
    assert store.task_for_annotation(502) == (P, 10)
    redis_client.hset(keys.annotations(), "777", "garbage")
    assert store.task_for_annotation(777) is None
    store.forget_annotations([])


def test_project_records(store: Store) -> None:
    assert store.get_project(P) is None
    id2label = {0: "leaf", 1: "stem", 2: "background"}
    assert store.set_project(P, "<View>v1</View>", id2label)  # new counts as changed
    assert not store.set_project(P, "<View>v1</View>", id2label)
    record = store.get_project(P)
    assert record is not None
    assert (record.project, record.label_config, record.id2label) == (
        P,
        "<View>v1</View>",
        id2label,
    )
    assert len(record.config_hash) == 64
    assert store.set_project(P, "<View>v2</View>", id2label)
    assert store.set_project(P, "<View>v2</View>", {**id2label, 3: "fruit"})
    assert store.project_ids() == {P}


def test_drop_project(store: Store, redis_client: redis.Redis, keys: Keys) -> None:
    store.set_project(P, "<View/>", {0: "background"})
    store.put_entry(P, 10, make_entry("a.jpg", 1), T0)
    store.index_annotations(P, 10, [500])
    store.index_annotations(P + 1, 10, [600])
    store.drop_project(P)
    assert store.project_ids() == set()
    assert store.get_project(P) is None and store.task_ids(P) == set()
    assert store.get_entry(P, 10) is None
    assert all(ttl > 0 for ttl in blob_versions(redis_client, keys, 10).values())
    assert store.task_for_annotation(500) is None
    assert store.task_for_annotation(600) == (P + 1, 10)


def test_nothing_in_redis_is_a_pickle(store: Store, redis_client: redis.Redis) -> None:
    store.set_project(P, "<View/>", {0: "background"})
    store.put_entry(P, 10, make_entry("a.jpg", 1), T0)
    store.record_error(P, 11, "boom", T0)
    store.index_annotations(P, 10, [5])
    for key in redis_client.scan_iter():
        kind = redis_client.type(key)
        assert kind in (b"hash", b"set", b"zset", b"string")  # zset, string: the review index
        if kind == b"hash":
            values = list(redis_client.hgetall(key).values())
        elif kind == b"set":
            values = list(redis_client.smembers(key))
        elif kind == b"zset":
            values = list(redis_client.zrange(key, 0, -1))
        else:
            values = [redis_client.get(key)]
        for value in values:
            assert isinstance(value, bytes)
            if value.startswith(b"\x28\xb5\x2f\xfd"):  # zstd frame: the mask
                continue
            value.decode("utf-8")  # text (JSON or plain), never a pickle
            assert not value.startswith(b"\x80")


def test_a_decoding_client_is_refused(redis_url: str, keys: Keys) -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        Store(redis.Redis.from_url(redis_url, decode_responses=True), keys)


def test_a_corrupt_blob_is_a_store_error(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    store.put_entry(P, 10, make_entry("a.jpg", 1), T0)
    (version,) = blob_versions(redis_client, keys, 10)
    redis_client.hset(keys.blob(P, 10, version), "mask", b"\x28\xb5\x2f\xfdnot zstd")
    with pytest.raises(StoreError, match=f"blob:10:{version}: stored entry is unreadable"):
        store.get_entry(P, 10)
    redis_client.hset(keys.blob(P, 10, version), "height", b"61")
    with pytest.raises(StoreError, match="unreadable"):
        store.get_entry(P, 10)


@pytest.mark.parametrize("offset", [0, 70_000], ids=["uint16", "uint32"])
def test_a_truncated_or_resized_mask_is_a_store_error(
    store: Store, redis_client: redis.Redis, keys: Keys, offset: int
) -> None:
    store.put_entry(P, 10, make_entry("a.jpg", 1, offset=offset), T0)
    (version,) = blob_versions(redis_client, keys, 10)
    blob = keys.blob(P, 10, version)
    mask = redis_client.hget(blob, "mask")
    assert mask is not None
    redis_client.hset(blob, "mask", mask[:-5])
    with pytest.raises(StoreError, match="unreadable"):
        store.get_entry(P, 10)
    redis_client.hset(blob, mapping={"mask": mask, "width": b"79"})
    with pytest.raises(StoreError, match="needs"):
        store.get_entry(P, 10)


# -- concurrency -----------------------------------------------------------------------------


class _InterferingRedis(redis.Redis):
    """Runs ``hook`` once, between a transaction's reads and its MULTI: a racing writer."""

    hook: Callable[[], object] | None = None

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        owner = self

        class _Pipe(Pipeline):
            def multi(self) -> None:
                hook, owner.hook = owner.hook, None
                if hook is not None:
                    hook()
                super().multi()

        return _Pipe(self.connection_pool, self.response_callbacks, transaction, shard_hint)


def test_a_racing_newer_write_wins_over_the_transaction_it_interrupts(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    racer = Store(redis_client, keys)
    newer = make_entry("a.jpg", seed=2)
    slow_client = _InterferingRedis.from_url(redis_url)
    assert isinstance(slow_client, _InterferingRedis)
    slow = Store(slow_client, keys)
    slow_client.hook = lambda: racer.put_entry(P, 10, newer, T1)
    # The slow writer read "no state", then the racer wrote T1 before its MULTI: EXEC must
    # fail, the retry must see T1 and give up, leaving the newer entry in place.
    assert not slow.put_entry(P, 10, make_entry("a.jpg", seed=1), T0)
    assert slow_client.hook is None
    assert_stored(slow, 10, newer)
    assert list(blob_versions(redis_client, keys, 10).values()) == [-1]


def test_concurrent_writers_leave_the_newest_state_and_one_live_blob(
    redis_url: str, redis_client: redis.Redis, keys: Keys
) -> None:
    rng = np.random.default_rng(5)
    stamps = [f"2024-05-01T10:{m:02d}:{s:02d}Z" for m in range(4) for s in range(0, 60, 6)]
    order = [str(s) for s in rng.permutation(stamps)]
    entries = {stamp: make_entry("a.jpg", seed=i, shape=(24, 32)) for i, stamp in enumerate(order)}
    errors: list[BaseException] = []

    def writer(chunk: list[str]) -> None:
        store = Store(redis.Redis.from_url(redis_url), keys)
        try:
            for stamp in chunk:
                store.put_entry(P, 10, entries[stamp], stamp)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(order[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    got = assert_stored(Store(redis_client, keys), 10, entries[max(stamps)])
    assert got.source_updated_at == max(stamps)
    assert list(blob_versions(redis_client, keys, 10).values()).count(-1) == 1


# -- snapshots -------------------------------------------------------------------------------


class _UpdatingFile(io.BytesIO):
    """A file whose first ``write()`` lets the project change under the snapshot."""

    def __init__(self, on_first_write: Callable[[], object]) -> None:
        super().__init__()
        self._pending: Callable[[], object] | None = on_first_write

    def write(self, data: Any, /) -> int:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()
        return super().write(data)


def _fill(store: Store, count: int) -> dict[str, Entry]:
    store.set_project(P, "<View/>", {0: "leaf", 1: "stem", 2: "fruit", 3: "soil", 4: "background"})
    entries = {}
    for task_id in range(1, count + 1):
        entry = make_entry(f"img_{task_id}.jpg", seed=task_id)
        store.put_entry(P, task_id, entry, T0)
        entries[entry.key] = entry
    return entries


def _assert_snapshot(data: dict[str, Any], want: dict[str, Entry]) -> None:
    assert list(data) == list(want)
    for key, entry in want.items():
        assert set(data[key]) == {"panoptic_mask", "inst2class"}
        mask = data[key]["panoptic_mask"]
        assert mask.dtype == np.uint32 and mask.flags.c_contiguous
        np.testing.assert_array_equal(mask, entry.panoptic_mask)
        assert data[key]["inst2class"] == entry.inst2class


def test_snapshot_is_point_in_time(store: Store) -> None:
    before = _fill(store, 5)

    def change_everything() -> None:
        store.put_entry(P, 1, make_entry("img_1.jpg", seed=99), T1)  # replaced
        store.mark_empty(P, 2, T1)  # annotation deleted
        store.delete_tasks(P, [3], T1)  # task deleted
        store.put_entry(P, 6, make_entry("img_6.jpg", seed=6), T1)  # task created

    file = _UpdatingFile(change_everything)
    info = store.write_snapshot(P, file)
    file.seek(0)
    _assert_snapshot(pickle.load(file), before)
    assert info.count == 5 and list(info.keys) == [1, 2, 3, 4, 5]
    after = io.BytesIO()
    store.write_snapshot(P, after)
    after.seek(0)
    assert sorted(pickle.load(after)) == ["img_1.jpg", "img_4.jpg", "img_5.jpg", "img_6.jpg"]
    meta = store.snapshot_meta(P, info)  # the sidecar of that snapshot, not of now
    assert list(meta["entries"]) == list(before)
    assert meta["entries"]["img_1.jpg"]["annotation_id"] == 101


def test_snapshot_loads_with_plain_pickle_load(store: Store, tmp_path: Path) -> None:
    want = _fill(store, 4)
    path = tmp_path / "snap.pkl"
    with path.open("wb") as file:
        info = store.write_snapshot(P, file)
    with path.open("rb") as file:
        _assert_snapshot(pickle.load(file), want)
    assert info.project == P and info.failures == []
    empty = io.BytesIO()
    store.write_snapshot(P + 1, empty)
    assert pickle.loads(empty.getvalue()) == {}


def test_snapshot_meta_is_the_sidecar(store: Store) -> None:
    want = _fill(store, 3)
    store.record_error(P, 2, "task 2: region r9: bad RLE", T1, key="img_2.jpg")
    store.record_error(P, 7, "task 7: image not allowed", T1)
    meta = store.snapshot_meta(P)
    assert meta["format"] == "ls-panoptic/1" and meta["project"] == P
    assert meta["id2label"] == {
        "0": "leaf",
        "1": "stem",
        "2": "fruit",
        "3": "soil",
        "4": "background",
    }
    assert meta["background_id"] == 4
    assert list(meta["entries"]) == ["img_1.jpg", "img_3.jpg"]  # failed task 2 is left out
    first = meta["entries"]["img_1.jpg"]
    assert first == {**want["img_1.jpg"].meta, "task_id": 1, "source_updated_at": T0}
    assert meta["failures"] == [
        {"task_id": 2, "key": "img_2.jpg", "message": "task 2: region r9: bad RLE"},
        {"task_id": 7, "key": None, "message": "task 7: image not allowed"},
    ]
    json.dumps(meta)


def test_snapshot_leaves_out_tasks_sharing_an_image_key(store: Store) -> None:
    _fill(store, 2)
    store.put_entry(P, 3, make_entry("img_1.jpg", seed=3), T0)
    file = io.BytesIO()
    info = store.write_snapshot(P, file)
    assert list(pickle.loads(file.getvalue())) == ["img_2.jpg"]
    messages = {f.task_id: f.message for f in info.failures}
    assert set(messages) == {1, 3}
    assert "also produced by task 3" in messages[1] and "also produced by task 1" in messages[3]
    assert store.snapshot_meta(P, info)["failures"] == [
        {"task_id": f.task_id, "key": f.key, "message": f.message} for f in info.failures
    ]


def test_a_snapshot_outliving_the_grace_period_fails_clearly(
    redis_client: redis.Redis, keys: Keys
) -> None:
    store = Store(redis_client, keys, grace_seconds=0)
    _fill(store, 2)
    file = _UpdatingFile(lambda: store.put_entry(P, 2, make_entry("img_2.jpg", seed=50), T1))
    with pytest.raises(StoreError, match="outlived the store's grace period"):
        store.write_snapshot(P, file)
    assert not file.getvalue().endswith(pickle.STOP)


class _Sink(io.RawIOBase):
    """Counts bytes and keeps none (a file that costs no memory)."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        size = memoryview(data).nbytes
        self.size += size
        return size


def test_snapshot_memory_stays_near_one_entry(store: Store) -> None:
    count, shape = 12, (600, 800)  # 1.9 MB per uint32 mask, 23 MB in all
    for task_id in range(1, count + 1):
        store.put_entry(P, task_id, make_entry(f"{task_id}.jpg", task_id, shape, n=30), T0)
    entry_bytes = shape[0] * shape[1] * 4
    sink = _Sink()
    tracemalloc.start()
    try:
        info = store.write_snapshot(P, sink)  # type: ignore[arg-type]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.count == count and sink.size > count * entry_bytes
    assert peak < 2.5 * entry_bytes, f"peak {peak / 1e6:.1f} MB for {entry_bytes / 1e6:.1f} MB"


def test_get_entry_memory_is_one_mask_and_its_stored_form(store: Store) -> None:
    shape = (600, 800)
    store.put_entry(P, 1, make_entry("a.jpg", 1, shape, n=30), T0)
    tracemalloc.start()
    try:
        got = store.get_entry(P, 1)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got is not None
    mask = got.panoptic_mask
    assert mask.shape == shape
    assert peak < 1.2 * (mask.nbytes + mask.nbytes // 2)  # uint32 result + uint16 stored form

"""The review page's index (worker.review_index) against a real Redis: kept by the store's own
state writes and deletes, filters, sorting, paging, counts, the change log, and a store written
before the index existed, indexed lazily."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from click.testing import CliRunner

from cli.store_cmds import resync
from ls_panoptic.model import Entry
from worker.keys import Keys
from worker.review_index import IndexBuilding, ReviewIndex
from worker.store import Store

P = 3


def _entry(task: int, classes: list[int], annotator: int | None = 7) -> Entry:
    mask = np.zeros((8, 8), dtype=np.uint32)
    for i in range(len(classes)):
        mask[i, :] = i + 1
    inst2class = {i + 1: c for i, c in enumerate(classes)}
    meta = {
        "task_id": task,
        "annotation_id": 100 + task,
        "completed_by": annotator,
        "updated_at": f"2024-01-01T00:00:{task % 60:02d}Z",
        "warnings": ["1 region hidden"],
    }
    return Entry(f"img{task}.jpg", mask, inst2class, meta)


def _stamp(second: int) -> str:
    return f"2024-05-01T00:{second // 60:02d}:{second % 60:02d}+00:00"


def test_rows_follow_every_kind_of_state_write(store: Store, redis_client: redis.Redis,
                                               keys: Keys) -> None:  # fmt: skip
    index = ReviewIndex(redis_client, keys)
    store.put_entry(P, 1, _entry(1, [0, 0, 2]), _stamp(1))
    store.put_entry(P, 2, _entry(2, [1, 2], annotator=9), _stamp(1))
    store.mark_empty(P, 3, _stamp(1))
    store.record_error(P, 4, "task 4: label 'cat' is not in the label set", _stamp(1))

    page = index.query(P)
    assert [r.task_id for r in page.rows] == [1, 2, 3, 4]
    one = page.rows[0]
    assert (one.status, one.classes, one.annotator, one.key) == (
        "ok",
        {0: 2, 2: 1},
        "7",
        "img1.jpg",
    )
    assert one.annotated_at == "2024-01-01T00:00:01Z" and one.warnings == 1 and one.version
    assert page.rows[3].status == "error" and "cat" in (page.rows[3].error or "")
    assert page.status_counts == {"empty": 1, "error": 1, "ok": 2}
    assert page.class_counts == {0: 1, 1: 1, 2: 2}
    assert page.annotator_counts == {"7": 1, "9": 1}

    # task 1 fails later: its last good entry stays, shown stale, still counted by class
    store.record_error(P, 1, "task 1: broken polygon", _stamp(2))
    row = index.row(P, 1)
    assert row is not None and row.status == "error" and row.stale and row.classes == {0: 2, 2: 1}
    assert index.query(P, status="stale").total == 1
    # mended: ok again, with other classes; the old class sets forget it
    store.put_entry(P, 1, _entry(1, [1]), _stamp(3))
    assert index.query(P, class_id=2).total == 1  # only task 2 now
    assert index.query(P, class_id=0).total == 0
    assert index.query(P, status="stale").total == 0
    # an older state is refused by the store, so the index keeps the newer one
    store.put_entry(P, 1, _entry(1, [0]), _stamp(2))
    assert index.query(P, class_id=1).total == 2

    store.delete_tasks(P, [2, 3], _stamp(4))
    page = index.query(P)
    assert [r.task_id for r in page.rows] == [1, 4]
    assert page.status_counts == {"error": 1, "ok": 1}
    assert page.class_counts == {1: 1} and page.annotator_counts == {"7": 1}


def _forty_tasks(store: Store) -> None:
    """Tasks 1-40: every tenth in error, the others ok with class ``task % 3`` by annotator
    ``task % 2``."""
    for task in range(1, 41):
        if task % 10 == 0:
            store.record_error(P, task, f"task {task}: bad", _stamp(1))
        else:
            store.put_entry(P, task, _entry(task, [task % 3], annotator=task % 2), _stamp(1))


def test_filters_sort_and_paging(store: Store, redis_client: redis.Redis, keys: Keys) -> None:
    index = ReviewIndex(redis_client, keys)
    _forty_tasks(store)
    page = index.query(P, offset=10, limit=5)
    assert page.total == 40 and [r.task_id for r in page.rows] == [11, 12, 13, 14, 15]
    page = index.query(P, descending=True, limit=3)
    assert [r.task_id for r in page.rows] == [40, 39, 38]
    page = index.query(P, status="error")
    assert page.total == 4 and [r.task_id for r in page.rows] == [10, 20, 30, 40]
    both = index.query(P, class_id=1, annotator="1", limit=100)
    expected = [t for t in range(1, 41) if t % 10 and t % 3 == 1 and t % 2 == 1]
    assert [r.task_id for r in both.rows] == expected and both.total == len(expected)
    assert index.query(P, class_id=1, annotator="1", offset=2, limit=2).total == len(expected)
    # changed since / sort by change: the latest writes come first
    time.sleep(0.02)
    cut = time.time()
    time.sleep(0.02)
    store.put_entry(P, 5, _entry(5, [2, 2]), _stamp(9))
    store.put_entry(P, 17, _entry(17, [0]), _stamp(9))
    since = index.query(P, changed_since=cut)
    assert sorted(r.task_id for r in since.rows) == [5, 17] and since.total == 2
    latest = index.query(P, sort="changed", descending=True, limit=2)
    assert [r.task_id for r in latest.rows] == [17, 5]
    assert index.query(P, changed_since=cut, status="error").total == 0
    # no scratch keys are left behind by the queries
    assert not list(redis_client.scan_iter(keys.review_prefix(P) + "scratch:*"))


def test_position_follows_the_grids_filtered_sorted_list(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """The detail view's next/previous: the neighbours in the list the grid showed."""
    index = ReviewIndex(redis_client, keys)
    _forty_tasks(store)
    whole = index.position(P, 17)
    assert whole is not None and (whole.before, whole.after, whole.rank) == (16, 18, 16)
    assert whole.listed and whole.total == 40
    first = index.position(P, 1)
    assert first is not None and (first.before, first.after) == (None, 2)
    # errors only, newest id first: 40, 30, 20, 10
    errors = index.position(P, 20, status="error", descending=True)
    assert errors is not None
    assert (errors.before, errors.after, errors.rank, errors.total) == (30, 10, 2, 4)
    # every position agrees with the pages query() gives, whatever the filters and order
    for filters in ({"class_id": 1}, {"class_id": 2, "annotator": "0", "descending": True},
                    {"sort": "changed", "descending": True}):  # fmt: skip
        listed = [r.task_id for r in index.query(P, limit=100, **filters).rows]
        for rank, task in enumerate(listed):
            place = index.position(P, task, **filters)
            assert place is not None and place.listed and place.rank == rank
            assert place.before == (listed[rank - 1] if rank else None)
            assert place.after == (listed[rank + 1] if rank + 1 < len(listed) else None)
    # a task that left the list (it changed status while looked at): where it would stand
    gone = index.position(P, 15, status="error")
    assert gone is not None and not gone.listed and (gone.before, gone.after) == (10, 20)
    assert gone.total == 4 and gone.rank == 1
    assert index.position(P, 999) is None
    assert not list(redis_client.scan_iter(keys.review_prefix(P) + "scratch:*"))


def test_change_log_gives_what_changed_after_a_cursor(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    index = ReviewIndex(redis_client, keys)
    store.put_entry(P, 1, _entry(1, [0]), _stamp(1))
    store.put_entry(P, 2, _entry(2, [0]), _stamp(1))
    cursor = index.query(P).seq
    assert index.changes(P, cursor).rows == []
    store.record_error(P, 2, "task 2: bad", _stamp(2))
    store.delete_tasks(P, [1], _stamp(3))
    changes = index.changes(P, cursor)
    assert [(r.task_id, r.status) for r in changes.rows] == [(2, "error")]
    assert changes.gone == [1] and changes.seq > cursor and not changes.reload
    assert index.changes(P, changes.seq).rows == []
    assert index.changes(P, changes.seq + 100).reload  # a cursor from a rebuilt index


def test_a_store_written_before_the_index_is_indexed_lazily(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    for task in range(1, 6):
        store.put_entry(P, task, _entry(task, [task % 2]), _stamp(1))
    store.record_error(P, 6, "task 6: bad", _stamp(1))
    # what an older version of the store left: states, no index
    for key in redis_client.scan_iter(keys.review_prefix(P) + "*"):
        redis_client.delete(key)
    index = ReviewIndex(redis_client, keys)
    page = index.query(P)
    assert page.total == 6 and page.status_counts == {"error": 1, "ok": 5}
    assert page.class_counts == {0: 2, 1: 3}
    assert not index.ensure_built(P)  # once
    # rebuilding an index that is already right changes no count
    assert index.rebuild(P) == 6
    assert index.query(P).class_counts == {0: 2, 1: 3}


def test_unreadable_state_records_are_listed_not_fatal(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    store.put_entry(P, 1, _entry(1, [0]), _stamp(1))
    redis_client.hset(keys.states(P), "2", b"{not json")
    index = ReviewIndex(redis_client, keys)
    index.rebuild(P)
    page = index.query(P)
    assert [(r.task_id, r.status) for r in page.rows] == [(1, "ok"), (2, "unreadable")]


def test_the_script_writes_the_keys_that_keys_py_names(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """The Lua script builds its keys from the review prefix itself: the same names."""
    store.put_entry(P, 1, _entry(1, [2]), _stamp(1))
    store.record_error(P, 2, "task 2: bad", _stamp(1), key="two.jpg")
    expected = {
        keys.review_rows(P), keys.review_order(P, "task"), keys.review_order(P, "changed"),
        keys.review_status(P, "ok"), keys.review_status(P, "error"), keys.review_class(P, 2),
        keys.review_annotator(P, "7"), keys.review_counts(P, "status"),
        keys.review_counts(P, "class"), keys.review_counts(P, "annotator"),
        keys.review_changes(P), keys.review_seq(P),
    }  # fmt: skip
    written = {k.decode() for k in redis_client.scan_iter(keys.review_prefix(P) + "*")}
    assert written == expected
    row = ReviewIndex(redis_client, keys).row(P, 2)
    assert row is not None and row.key == "two.jpg"  # never converted: the failure's key


def test_only_one_process_builds_the_index_and_the_others_see_its_progress(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    store.put_entry(P, 1, _entry(1, [0]), _stamp(1))
    index = ReviewIndex(redis_client, keys)
    assert index.query(P).total == 1
    redis_client.set(keys.review_building(P), "250/1000", ex=60)  # another process is at it
    for read in (lambda: index.query(P), lambda: index.row(P, 1), lambda: index.changes(P, 0),
                 lambda: index.position(P, 1), lambda: index.ensure_built(P)):  # fmt: skip
        with pytest.raises(IndexBuilding) as caught:
            read()
        assert (caught.value.done, caught.value.total) == (250, 1000)
    with pytest.raises(IndexBuilding):
        index.rebuild(P)  # not twice at once
    assert index.progress(P) == (250, 1000)
    redis_client.delete(keys.review_building(P))
    redis_client.delete(keys.review_built(P))
    seen: list[tuple[int, int]] = []
    assert index.rebuild(P, on_batch=lambda done, total: seen.append((done, total))) == 1
    assert seen == [(1, 1)] and index.progress(P) is None
    assert not redis_client.exists(keys.review_building(P)) and not index.ensure_built(P)


def test_a_rebuild_starts_from_scratch_and_keeps_cursors_behind(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """What a corrupted or outdated index held is gone after a rebuild; open pages' cursors
    stay behind the sequence number, so they reload instead of missing changes."""
    index = ReviewIndex(redis_client, keys)
    for task in range(1, 4):
        store.put_entry(P, task, _entry(task, [task % 2]), _stamp(1))
    cursor = index.query(P).seq
    redis_client.sadd(keys.review_class(P, 5), "2")  # stray members, counts out of step
    redis_client.hset(keys.review_counts(P, "class"), "5", 9)
    redis_client.sadd(keys.review_status(P, "error"), "3")
    assert index.query(P, class_id=5).total == 1  # the damage shows
    assert index.rebuild(P) == 3
    page = index.query(P)
    assert page.class_counts == {0: 1, 1: 2} and page.status_counts == {"ok": 3}
    assert index.query(P, class_id=5).total == 0 and index.query(P, status="error").total == 0
    assert page.seq > cursor
    after = index.changes(P, cursor)
    assert sorted(r.task_id for r in after.rows) == [1, 2, 3] or after.reload


def test_too_many_changes_give_their_number_only(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    index = ReviewIndex(redis_client, keys)
    cursor = index.query(P).seq
    for task in range(1, 6):
        store.mark_empty(P, task, _stamp(1))
    few = index.changes(P, cursor, limit=5)
    assert len(few.rows) == 5 and few.many == 0
    many = index.changes(P, cursor, limit=4)
    assert many.rows == [] and many.many == 5 and many.seq == few.seq and not many.reload


def test_a_dropped_project_leaves_no_rows_behind(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    index = ReviewIndex(redis_client, keys)
    store.put_entry(P, 1, _entry(1, [0]), _stamp(1))
    store.put_entry(P, 2, _entry(2, [1]), _stamp(1))
    assert index.query(P).total == 2
    store.drop_project(P)  # its states go, in a transaction of its own
    store.put_entry(P, 3, _entry(3, [2]), _stamp(2))  # imported again
    page = index.query(P)
    assert [r.task_id for r in page.rows] == [3] and page.class_counts == {2: 1}


def test_a_resync_batch_keeps_the_index_too(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    """The resync stores many tasks per transaction (Store.put_outcomes): each is indexed."""
    from worker._store_batch import TaskWrite
    from worker._store_codec import encode_entry

    version, fields = encode_entry(_entry(1, [0, 2]), _stamp(1))
    writes = [
        TaskWrite(1, _stamp(1), "ok", key="img1.jpg", version=version, fields=fields),
        TaskWrite(2, _stamp(1), "error", key="img2.jpg", message="task 2: bad"),
        TaskWrite(3, _stamp(1), "empty"),
    ]
    assert store.put_outcomes(P, writes) == [True, True, True]
    page = ReviewIndex(redis_client, keys).query(P)
    assert [(r.task_id, r.status) for r in page.rows] == [(1, "ok"), (2, "error"), (3, "empty")]
    assert page.class_counts == {0: 1, 2: 1} and page.rows[1].key == "img2.jpg"


def test_resync_rebuild_rebuilds_the_review_index_too(
    store: Store, redis_client: redis.Redis, keys: Keys, redis_url: str
) -> None:
    """``ls-panoptic resync --rebuild`` (the job goes to the queue; the index is redone here)."""
    for task in range(1, 4):
        store.put_entry(P, task, _entry(task, [2]), _stamp(1))
    index = ReviewIndex(redis_client, keys)
    assert index.query(P).total == 3
    redis_client.sadd(keys.review_class(P, 6), "1")  # damage the rebuild must undo
    assert index.query(P, class_id=6).total == 1
    env = {"REDIS_URL": redis_url, "LS_PANOPTIC_KEY_PREFIX": keys.prefix,
           "LS_PANOPTIC_QUEUE": "lsp-test-review-rebuild"}  # fmt: skip
    result = CliRunner().invoke(resync, ["--project", str(P), "--rebuild"], env=env)
    assert result.exit_code == 0, result.output
    assert f"review index of project {P} rebuilt: 3 tasks" in result.output
    assert index.query(P, class_id=6).total == 0 and index.query(P, class_id=2).total == 3
    # while another process builds it, the command says so and enqueues the rebuild still
    redis_client.set(keys.review_building(P), "1/3", ex=60)
    result = CliRunner().invoke(resync, ["--project", str(P), "--rebuild"], env=env)
    assert result.exit_code == 0 and "being built: 1 of 3" in result.output
    assert "rebuild of project 3 enqueued" in result.output


def test_a_rebuild_under_concurrent_writes_leaves_no_stray_member(
    store: Store, redis_client: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State writes land between the rebuild's scan of the index and its deletion, and
    between the deletion and the re-indexing: no task stays in a set it left."""
    index = ReviewIndex(redis_client, keys)
    store.put_entry(P, 1, _entry(1, [0]), _stamp(1))
    assert index.query(P).total == 1
    scan = redis_client.scan_iter

    def scan_then_write(*args: object, **kwargs: object) -> Iterator[bytes]:
        found = list(scan(*args, **kwargs))  # type: ignore[arg-type]
        store.put_entry(P, 9, _entry(9, [7]), _stamp(2))  # a class set the scan did not see
        return iter(found)

    clear = index._clear

    def clear_then_write(project: int) -> None:
        clear(project)
        store.put_entry(P, 9, _entry(9, [8]), _stamp(3))  # task 9 leaves class 7

    monkeypatch.setattr(redis_client, "scan_iter", scan_then_write)
    monkeypatch.setattr(index, "_clear", clear_then_write)
    assert index.rebuild(P) == 2
    monkeypatch.undo()
    assert index.query(P, class_id=7).total == 0 and index.query(P, class_id=8).total == 1
    assert index.query(P).class_counts == {0: 1, 8: 1}

"""Live = batch, also on failure, against a real Redis: a task whose latest conversion failed has
no entry in a snapshot and is listed in its sidecar (task, key, reason) as ``convert`` lists it;
its last good entry stays for ``/entries`` and previews, marked stale, until the task recovers.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from ls_panoptic.batch import convert_tasks
from ls_panoptic.labels import labelset_from_config
from ls_panoptic.sidecar import Failure
from ls_panoptic.tasks import task_from_dict
from tests.service import API
from tests.stub_labelstudio import P as STUB_PROJECT
from tests.stub_labelstudio import StubLabelStudio
from worker import runtime
from worker.keys import Keys
from worker.store import Store

from .test_queueing import annotation, now, sync_and_run
from .test_store import T0, T1, T2, P, blob_versions, make_entry

#: a label config with the classes of ``make_entry``'s masks (background: 4)
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    + "".join(f'<Label value="{name}"/>' for name in ("leaf", "stem", "fruit", "soil"))
    + "</BrushLabels></View>"
)
LABELS = labelset_from_config(LABEL_CONFIG)
BROKEN = "task 2: region r9: polygon: fewer than 3 points"


def snapshot(store: Store) -> tuple[dict[str, Any], dict[str, Any]]:
    """The project's snapshot, loaded, and its sidecar."""
    file = io.BytesIO()
    info = store.write_snapshot(P, file)
    return pickle.loads(file.getvalue()), store.snapshot_meta(P, info)


def two_tasks_then_one_fails(store: Store) -> None:
    """Tasks 1 and 2 convert (``img_1.jpg``, ``img_2.jpg``); then task 2's annotation fails."""
    store.set_project(P, LABEL_CONFIG, LABELS.id2label)
    store.put_entry(P, 1, make_entry("img_1.jpg", seed=1), T0)
    store.put_entry(P, 2, make_entry("img_2.jpg", seed=2), T0)
    store.record_error(P, 2, BROKEN, T1, "annotation 102 updated x; inputs 00", "img_2.jpg")


def test_a_failed_task_leaves_the_snapshot_and_is_listed_until_it_recovers(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    two_tasks_then_one_fails(store)
    (good_version,) = blob_versions(redis_client, keys, 2)
    data, meta = snapshot(store)
    assert list(data) == ["img_1.jpg"] and list(meta["entries"]) == ["img_1.jpg"]
    assert meta["failures"] == [{"task_id": 2, "key": "img_2.jpg", "message": BROKEN}]

    kept = store.get_entry(P, 2)  # the last good entry, for review only
    assert kept is not None and kept.stale and kept.key == "img_2.jpg"
    assert blob_versions(redis_client, keys, 2) == {good_version: -1}  # kept: never expires
    current = store.get_entry(P, 1)
    assert current is not None and not current.stale
    failed = {s.task_id: s for s in store.states(P)}[2]
    assert (failed.status, failed.error, failed.stale_version) == ("error", BROKEN, good_version)

    store.put_entry(P, 2, make_entry("img_2.jpg", seed=3), T2)  # mended
    data, meta = snapshot(store)
    assert list(data) == ["img_1.jpg", "img_2.jpg"] and meta["failures"] == []
    mended = store.get_entry(P, 2)
    assert mended is not None and not mended.stale
    assert {s.task_id: s.stale_version for s in store.states(P)} == {1: None, 2: None}
    assert 0 < blob_versions(redis_client, keys, 2)[good_version] <= 600  # now superseded


def test_a_failure_is_pinned_with_the_snapshot_like_any_change(store: Store) -> None:
    """A task that fails (or recovers) while a snapshot is written changes neither that
    snapshot nor its sidecar: entries and failures are pinned at one instant."""
    store.set_project(P, LABEL_CONFIG, LABELS.id2label)
    store.put_entry(P, 1, make_entry("img_1.jpg", seed=1), T0)
    store.record_error(P, 2, "task 2: boom", T0, key="img_2.jpg")

    class FailingMeanwhile(io.BytesIO):
        def write(self, data: Any, /) -> int:
            if not self.tell():  # at the first write: the pin is taken
                store.record_error(P, 1, "task 1: boom", T1, key="img_1.jpg")
                store.put_entry(P, 2, make_entry("img_2.jpg", seed=2), T1)
            return super().write(data)

    file = FailingMeanwhile()
    info = store.write_snapshot(P, file)
    assert list(pickle.loads(file.getvalue())) == ["img_1.jpg"]
    assert info.failures == [Failure(2, "img_2.jpg", "task 2: boom")]
    assert store.snapshot_meta(P, info)["failures"] == [
        {"task_id": 2, "key": "img_2.jpg", "message": "task 2: boom"}
    ]
    data, meta = snapshot(store)  # and the next snapshot sees both changes
    assert list(data) == ["img_2.jpg"]
    assert [f["task_id"] for f in meta["failures"]] == [1]


def test_a_second_failure_keeps_the_stale_entry_and_replaces_the_listed_reason(
    store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    two_tasks_then_one_fails(store)
    (good_version,) = blob_versions(redis_client, keys, 2)
    store.record_error(P, 2, "task 2: another reason", T2, key="img_2.jpg")
    (failure,) = snapshot(store)[1]["failures"]
    assert failure == {"task_id": 2, "key": "img_2.jpg", "message": "task 2: another reason"}
    assert {s.task_id: s.stale_version for s in store.states(P)}[2] == good_version
    assert blob_versions(redis_client, keys, 2) == {good_version: -1}


@pytest.mark.parametrize("then", ["annotation deleted", "task deleted", "project dropped"])
def test_what_ends_a_failed_task_lets_its_stale_entry_expire(
    store: Store, redis_client: redis.Redis, keys: Keys, then: str
) -> None:
    two_tasks_then_one_fails(store)
    if then == "annotation deleted":
        assert store.mark_empty(P, 2, T2)
    elif then == "task deleted":
        assert store.delete_tasks(P, [2], T2) == 1
    else:
        store.drop_project(P)
    assert store.get_entry(P, 2) is None
    assert all(ttl > 0 for ttl in blob_versions(redis_client, keys, 2).values())
    assert redis_client.hlen(keys.failures(P)) == 0
    if then != "project dropped":
        assert snapshot(store)[1]["failures"] == []


def test_a_failed_task_sharing_an_entrys_image_key_fails_both_as_in_a_batch(
    store: Store,
) -> None:
    """``convert`` plans every task's key before converting: a task that then fails still
    collides with another task of its image key, and both leave the snapshot."""
    two_tasks_then_one_fails(store)
    store.record_error(P, 3, "task 3: boom", T1, key="img_1.jpg")
    data, meta = snapshot(store)
    assert data == {}
    messages = {f["task_id"]: f["message"] for f in meta["failures"]}
    assert messages[2] == BROKEN
    assert messages[1].startswith("task 1: image key 'img_1.jpg' is also produced by task 3;")
    assert messages[3].startswith("task 3: image key 'img_1.jpg' is also produced by task 1;")


def test_entries_and_previews_show_the_last_good_entry_marked_stale(
    client: FlaskClient, store: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    two_tasks_then_one_fails(store)
    (good_version,) = blob_versions(redis_client, keys, 2)
    listed = client.get(f"/projects/{P}/entries", headers=API).json
    assert listed is not None
    states = {s["task_id"]: s for s in listed}
    assert states[1]["status"] == "ok" and states[1]["stale_version"] is None
    failed = states[2]
    assert (failed["status"], failed["error"], failed["key"]) == ("error", BROKEN, "img_2.jpg")
    assert failed["stale_version"] == good_version
    for task_id, stale in ((1, "false"), (2, "true")):
        answer = client.get(f"/projects/{P}/entries/{task_id}/preview.png", headers=API)
        assert answer.status_code == 200 and answer.headers["X-Entry-Stale"] == stale
    sidecar = client.get(f"/projects/{P}/snapshot.meta.json", headers=API).json
    assert sidecar is not None
    assert sidecar["failures"] == [{"task_id": 2, "key": "img_2.jpg", "message": BROKEN}]
    answer = client.get(f"/projects/{P}/snapshot.pkl", headers=API)
    assert list(pickle.loads(answer.data)) == ["img_1.jpg"]
    assert answer.headers["X-Snapshot-Failures"] == "1"


# -- through the jobs: the live snapshot against convert_tasks of the same tasks ---------------


def assert_live_equals_batch(rt: runtime.Runtime, stub: StubLabelStudio, folder: Path) -> Any:
    """The store's snapshot is byte for byte the batch conversion of the stub's tasks, and the
    two sidecars list the same failures; returns those failures."""
    live = io.BytesIO()
    info = rt.store.write_snapshot(STUB_PROJECT, live)
    live_meta = rt.store.snapshot_meta(STUB_PROJECT, info)
    folder.mkdir()
    tasks = [task_from_dict(raw) for _id, raw in sorted(stub.tasks.items())]
    labels = labelset_from_config(stub.config)
    convert_tasks(tasks, folder / "batch.pkl", labels, rt.options)
    batch_meta = json.loads((folder / "batch.meta.json").read_text())
    assert live.getvalue() == (folder / "batch.pkl").read_bytes()
    assert live_meta["failures"] == batch_meta["failures"]
    assert live_meta["id2label"] == batch_meta["id2label"]
    return live_meta["failures"]


def test_a_sync_that_fails_keeps_the_live_snapshot_equal_to_the_batch(
    rt: runtime.Runtime, stub: StubLabelStudio, tmp_path: Path
) -> None:
    stub.add(1, annotation(11, "leaf"))
    stub.add(2, annotation(21, "stem"))
    stub.add(3, annotation(31, "weed"))  # never converts: listed, under its image key
    sync_and_run(rt, [1, 2, 3])
    never = assert_live_equals_batch(rt, stub, tmp_path / "first")
    assert [(f["task_id"], f["key"]) for f in never] == [(3, "img3.jpg")]
    assert rt.store.get_entry(STUB_PROJECT, 3) is None  # nothing to review

    stub.tasks[2]["annotations"] = [annotation(21, "weed", now())]  # outside the label config
    sync_and_run(rt, [2])
    failed = assert_live_equals_batch(rt, stub, tmp_path / "failed")
    assert [(f["task_id"], f["key"]) for f in failed] == [(2, "img2.jpg"), (3, "img3.jpg")]
    assert failed[0]["message"].startswith("task 2: region r1: label 'weed' is not in the label")
    stale = rt.store.get_entry(STUB_PROJECT, 2)
    assert stale is not None and stale.stale and stale.meta["annotation_id"] == 21

    stub.tasks[2]["annotations"] = [annotation(21, "leaf", now())]
    sync_and_run(rt, [2])
    assert assert_live_equals_batch(rt, stub, tmp_path / "mended") == never
    mended = rt.store.get_entry(STUB_PROJECT, 2)
    assert mended is not None and not mended.stale


def test_the_worker_logs_a_failure_with_what_an_operator_can_set(
    rt: runtime.Runtime, stub: StubLabelStudio, caplog: pytest.LogCaptureFixture
) -> None:
    """The store and the sidecar keep the batch's words; the log adds the service's remedy."""
    stub.add(3, annotation(31, "weed"))
    with caplog.at_level(logging.WARNING, logger="worker.jobs"):
        sync_and_run(rt, [3])
    (state,) = rt.store.states(STUB_PROJECT)
    assert state.error is not None and "LS_PANOPTIC" not in state.error
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "worker.jobs"]
    assert logged == (
        f"sync failed project={STUB_PROJECT} {state.error}; add it to the project's label "
        "config, or set LS_PANOPTIC_UNKNOWN_LABELS=skip"
    )


def test_entries_say_what_an_operator_can_change_about_a_failure(
    rt: runtime.Runtime, stub: StubLabelStudio, client: FlaskClient
) -> None:
    """The stored message is the batch's; ``/entries`` adds the service's remedy as a hint."""
    stub.add(3, annotation(31, "weed"))
    sync_and_run(rt, [3])
    listed = client.get(f"/projects/{STUB_PROJECT}/entries", headers=API).json
    assert listed is not None
    (failed,) = listed
    assert failed["remedy"] == "unknown_labels" and "LS_PANOPTIC" not in failed["error"]
    assert failed["hint"] == (
        "add it to the project's label config, or set LS_PANOPTIC_UNKNOWN_LABELS=skip"
    )

"""``GET /projects/<id>/snapshot.pkl`` streamed from the store (issue 14): no temporary file,
the same bytes as ``Store.write_snapshot``, its exact length announced first, point-in-time,
and a failure mid-way never mistaken for a whole snapshot. Real Redis, Flask's test client."""

from __future__ import annotations

import io
import pickle
import tempfile
import threading
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from ls_panoptic.model import Entry
from tests.service import API
from worker.store import Store, StoreError

from .test_backend import CONFIG, ID2LABEL, PROJECT

STAMP = "2026-01-05T10:00:00+00:00"


def put(store: Store, task_id: int, shape: tuple[int, int], top: int, stamp: str = STAMP) -> None:
    rng = np.random.default_rng(task_id)
    mask = rng.integers(1, top, size=shape, dtype=np.uint32)
    inst2class = {int(i): int(i) % 3 for i in np.unique(mask)}
    entry = Entry(f"img{task_id}.jpg", mask, inst2class, {"task_id": task_id})
    assert store.put_entry(PROJECT, task_id, entry, stamp)


@pytest.fixture
def stored(store: Store) -> Store:
    """Entries of several shapes, narrowed to uint16 and not, and a failed task."""
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    put(store, 11, (108, 192), 40)
    put(store, 12, (3, 5), 70_000)  # ids past uint16: stored wide
    put(store, 13, (1080 // 4, 1920 // 4), 300)
    store.record_error(PROJECT, 14, "task 14: broken", STAMP, key="img14.jpg")
    return store


def test_the_streamed_snapshot_is_the_written_one_byte_for_byte_without_a_temporary_file(
    client: FlaskClient, stored: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = io.BytesIO()
    stored.write_snapshot(PROJECT, written)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the snapshot must not go through a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refused)
    answer = client.get(f"/projects/{PROJECT}/snapshot.pkl", headers=API)
    assert answer.status_code == 200
    assert answer.data == written.getvalue()
    assert int(answer.headers["Content-Length"]) == len(answer.data)
    assert answer.headers["X-Snapshot-Entries"] == "3"
    assert answer.headers["X-Snapshot-Failures"] == "1"
    assert f'filename="project-{PROJECT}.pkl"' in answer.headers["Content-Disposition"]
    loaded = pickle.loads(answer.data)
    assert list(loaded) == ["img11.jpg", "img12.jpg", "img13.jpg"]
    assert loaded["img12.jpg"]["panoptic_mask"].max() >= 2**16


def test_the_stream_holds_the_entries_as_they_were_when_it_was_requested(
    client: FlaskClient, stored: Store
) -> None:
    before = io.BytesIO()
    stored.write_snapshot(PROJECT, before)
    answer = client.get(f"/projects/{PROJECT}/snapshot.pkl", headers=API, buffered=False)
    put(stored, 11, (10, 10), 9, stamp="2026-02-01T00:00:00+00:00")  # changed meanwhile
    stored.delete_tasks(PROJECT, [12], "2026-02-01T00:00:00+00:00")
    put(stored, 15, (4, 4), 5)
    assert b"".join(answer.response) == before.getvalue()  # type: ignore[arg-type]


def test_a_pinned_entry_gone_mid_stream_ends_it_short_of_its_length(
    client: FlaskClient, stored: Store, redis_client: Any
) -> None:
    answer = client.get(f"/projects/{PROJECT}/snapshot.pkl", headers=API, buffered=False)
    announced = int(answer.headers["Content-Length"])
    for blob in redis_client.scan_iter(match=b"*blob*13*"):  # past its grace period
        redis_client.delete(blob)
    got = bytearray()
    with pytest.raises(StoreError, match="grace period"):
        for chunk in answer.response:
            got += chunk  # type: ignore[arg-type]
    assert 0 < len(got) < announced
    with pytest.raises((pickle.UnpicklingError, EOFError)):
        pickle.loads(bytes(got))


def test_a_client_gone_mid_stream_stops_the_read_ahead(stored: Store) -> None:
    info = stored.pin_snapshot(PROJECT)
    _size, chunks = stored.stream_snapshot(info)
    next(chunks), next(chunks)  # the header, then the first entry's first chunk
    assert any(t.name == "snapshot-read-ahead" for t in threading.enumerate())
    chunks.close()  # what the server does when the client goes away
    assert not any(t.name == "snapshot-read-ahead" for t in threading.enumerate())

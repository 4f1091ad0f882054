"""Debounce of bursts (``LS_PANOPTIC_DEBOUNCE_MS`` / ``_MAX_S``) and the label-config cache
(``LS_PANOPTIC_CONFIG_TTL_S``), against a real Redis; Label Studio is a stub.

The burst tests stream events from a thread while the service's in-process rq worker (burst mode)
processes the queue in the main thread (rq installs signal handlers: main thread only), so
jobs start while events still arrive, as with a live worker. They assert conversion counts
only; the quiet period they use is several times the gaps between events, so a loaded machine
cannot split a stream by delaying one event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.stub_labelstudio import CONFIG, P, StubLabelStudio
from worker import reconcile, runtime
from worker.jobqueue import drain

SWAPPED = CONFIG.replace(
    '<Label value="leaf"/><Label value="stem"/>', '<Label value="stem"/><Label value="leaf"/>'
)
LABELS = ("leaf", "stem")


def annotation(annotation_id: int, label: str, n: int = 0) -> dict[str, Any]:
    stamp = f"2024-05-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000000Z"
    value = {"points": [[10, 10], [60, 15], [40, 70]], "closed": True, "polygonlabels": [label]}
    region = {"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
              "original_width": 40, "original_height": 30, "value": value}  # fmt: skip
    return {"id": annotation_id, "result": [region], "was_cancelled": False, "completed_by": 1,
            "created_at": stamp, "updated_at": stamp, "ground_truth": False}  # fmt: skip


Build = Callable[..., runtime.Runtime]  # the shared ``make_rt`` fixture (tests/conftest.py)


def run_burst(rt: runtime.Runtime) -> None:
    drain([rt.dispatcher.queue], rt.redis)


def stream_while_working(
    rt: runtime.Runtime, stub: StubLabelStudio, events: int, gap: float
) -> tuple[int, str]:
    """Edit task 1 and send its event ``events`` times, ``gap`` seconds apart, from a thread,
    while a burst worker keeps draining the queue; returns (jobs enqueued, final label)."""
    enqueued: list[int] = []

    def produce() -> None:
        for n in range(events):
            stub.add(1, annotation(11, LABELS[n % 2], n))
            enqueued.append(rt.dispatcher.sync_tasks(P, [1]))
            time.sleep(gap)

    producer = threading.Thread(target=produce, name="events")
    producer.start()
    while producer.is_alive():
        run_burst(rt)
        time.sleep(0.005)
    producer.join()
    run_burst(rt)  # whatever the last events enqueued
    return sum(enqueued), LABELS[(events - 1) % 2]


def stored_label(rt: runtime.Runtime) -> str:
    entry = rt.store.get_entry(P, 1)
    assert entry is not None
    record = rt.store.get_project(P)
    assert record is not None
    (label,) = {record.id2label[c] for c in entry.inst2class.values()} - {"background"}
    return label


def prime(rt: runtime.Runtime, stub: StubLabelStudio) -> None:
    """Task 1 converted once, the project known to the store (its first-sight resync done)."""
    stub.add(1, annotation(11, "leaf"))
    rt.dispatcher.sync_tasks(P, [1])
    run_burst(rt)
    stub.pulls.clear()


# --- debounce -------------------------------------------------------------------------------


def test_a_stream_of_events_with_short_gaps_costs_at_most_two_conversions(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    rt = make_rt(debounce_ms=250, debounce_max_s=60.0)
    prime(rt, stub)
    enqueued, last = stream_while_working(rt, stub, events=150, gap=0.01)  # ~1.5 s
    assert enqueued <= 2 and stub.pulls[1] <= 2
    assert stored_label(rt) == last  # the last state won


def test_without_debounce_the_same_stream_costs_more(make_rt: Build, stub: StubLabelStudio) -> None:
    """Control: the stream above does split into several conversions with the debounce off."""
    rt = make_rt(debounce_ms=0)
    prime(rt, stub)
    enqueued, last = stream_while_working(rt, stub, events=150, gap=0.01)
    assert stub.pulls[1] == enqueued > 2
    assert stored_label(rt) == last


def test_the_cap_bounds_the_wait_of_an_endless_stream(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    """Events every 10 ms for ~2 s never leave the 250 ms quiet period: only the 0.3 s cap
    lets jobs convert, so the stream costs several conversions instead of one at its end."""
    rt = make_rt(debounce_ms=250, debounce_max_s=0.3)
    prime(rt, stub)
    enqueued, last = stream_while_working(rt, stub, events=200, gap=0.01)
    assert stub.pulls[1] == enqueued >= 2
    assert stored_label(rt) == last


def test_an_isolated_event_converts_once_without_waiting_for_the_cap(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    rt = make_rt(debounce_ms=50, debounce_max_s=120.0)
    prime(rt, stub)
    stub.add(1, annotation(11, "stem", 1))
    assert rt.dispatcher.sync_tasks(P, [1]) == 1
    started = time.monotonic()
    run_burst(rt)
    assert time.monotonic() - started < 60  # generous: far below the 120 s cap
    assert stub.pulls[1] == 1 and stored_label(rt) == "stem"


def test_the_wait_for_a_fresh_event_is_at_most_the_quiet_period(make_rt: Build) -> None:
    """``await_quiet`` sleeps the rest of the quiet period, by Redis time: the sleeps it asks
    for add up to no more than the quiet period (however late it runs)."""
    rt = make_rt(debounce_ms=200)
    rt.dispatcher.sync_tasks(P, [1])  # records the event's time
    asked: list[float] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        time.sleep(seconds)

    rt.dispatcher.await_quiet(P, 1, 0.2, time.monotonic() + 120, sleep=sleep)
    assert asked and sum(asked) <= 0.2
    asked.clear()
    rt.dispatcher.await_quiet(P, 1, 0.2, time.monotonic() + 120, sleep=sleep)  # now quiet
    rt.dispatcher.await_quiet(P, 2, 0.2, time.monotonic() + 120, sleep=sleep)  # no event
    assert asked == []


def test_the_wait_stops_at_the_deadline(make_rt: Build) -> None:
    rt = make_rt()
    rt.dispatcher.sync_tasks(P, [1])
    now = [100.0]

    def sleep(seconds: float) -> None:  # a fake clock: no real waiting
        now[0] += seconds

    waited = rt.dispatcher.await_quiet(P, 1, 3600.0, 102.5, clock=lambda: now[0], sleep=sleep)
    assert waited == pytest.approx(2.5)


def test_the_debounce_off_records_no_event_time(make_rt: Build) -> None:
    rt = make_rt(debounce_ms=0)
    assert rt.dispatcher.sync_tasks(P, [1, 2]) == 2
    assert not rt.redis.exists(rt.dispatcher.keys.last_event(P, 1))
    on = make_rt(debounce_ms=50)
    assert on.dispatcher.sync_tasks(P, [1, 2]) == 0  # coalesced, but the time is recorded
    assert on.redis.exists(on.dispatcher.keys.last_event(P, 1), on.dispatcher.keys.last_event(P, 2))


# --- label config cache ---------------------------------------------------------------------


def test_syncs_use_the_stored_config_while_it_is_fresh(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    rt = make_rt(debounce_ms=0)
    prime(rt, stub)  # the first sync and the resync of a new project fetch the config
    fetches = stub.config_fetches
    for n in range(5):
        stub.add(1, annotation(11, LABELS[n % 2], n + 1))
        rt.dispatcher.sync_tasks(P, [1])
        run_burst(rt)
    assert stub.pulls[1] == 5 and stub.config_fetches == fetches
    assert stored_label(rt) == "leaf"


def test_a_config_older_than_its_ttl_is_fetched_again(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    rt = make_rt(debounce_ms=0, config_ttl=0.2)
    prime(rt, stub)
    stub.add(2, annotation(21, "leaf"))
    rt.dispatcher.sync_tasks(P, [2])
    run_burst(rt)
    stub.config = SWAPPED  # changed without PROJECT_UPDATED (a lost webhook)
    time.sleep(0.5)  # the cached config expires
    fetches = stub.config_fetches
    rt.dispatcher.sync_tasks(P, [1])  # any event: its sync fetches the config, sees the change
    run_burst(rt)
    assert stub.config_fetches > fetches
    for task_id in (1, 2):  # and the rebuild re-converted both with the new ids (leaf is 1 now)
        entry = rt.store.get_entry(P, task_id)
        assert entry is not None and set(entry.inst2class.values()) == {1, 2}


def test_a_rebuild_being_enqueued_drops_the_cached_config(
    make_rt: Build, stub: StubLabelStudio
) -> None:
    """PROJECT_UPDATED with a changed config enqueues a rebuild: a sync that runs before it
    already converts with the new config."""
    rt = make_rt(debounce_ms=0)
    prime(rt, stub)
    stub.config = SWAPPED
    rt.dispatcher.sync_tasks(P, [1])  # queued first
    rt.dispatcher.rebuild_project(P)  # what the backend does on PROJECT_UPDATED
    run_burst(rt)
    entry = rt.store.get_entry(P, 1)
    assert entry is not None and set(entry.inst2class.values()) == {1, 2}
    record = rt.store.get_project(P)
    assert record is not None and record.label_config == SWAPPED


def test_a_config_ttl_of_zero_fetches_on_every_sync(make_rt: Build, stub: StubLabelStudio) -> None:
    rt = make_rt(debounce_ms=0, config_ttl=0)
    prime(rt, stub)
    fetches = stub.config_fetches
    for _ in range(3):
        rt.dispatcher.sync_tasks(P, [1])
        run_burst(rt)
    assert stub.config_fetches == fetches + 3
    assert not rt.redis.exists(rt.dispatcher.keys.config_checked(P))


def test_resync_always_fetches_the_config(make_rt: Build, stub: StubLabelStudio) -> None:
    rt = make_rt(debounce_ms=0)
    prime(rt, stub)
    stub.config = SWAPPED
    summary = reconcile.resync(rt, P)
    assert summary["config"] == "changed" and summary["forced"]

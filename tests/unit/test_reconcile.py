"""Which listed tasks a resync syncs (``worker.reconcile.needs_sync``), for failed tasks above all:
a failure recorded with its fingerprint is not retried while nothing it depends on changed."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.selection import select_annotation
from ls_panoptic.tasks import task_from_dict
from worker.reconcile import failure_fingerprint, needs_sync
from worker.store import EntryState

CONFIG_HASH, OTHER_CONFIG_HASH = "a" * 64, "b" * 64
OPTIONS = ConvertOptions()
OBSERVED = "2024-05-01T12:00:00+00:00"  # when the failed sync pulled the task


def annotation(annotation_id: int, updated_at: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    value = {"points": [[1, 1], [30, 2], [3, 20]], "polygonlabels": ["weed"]}
    region = {"id": "r1", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
              "original_width": 40, "original_height": 30, "value": value}  # fmt: skip
    return {"id": annotation_id, "result": [region], "created_at": "2024-05-01T09:00:00Z",
            "updated_at": updated_at, "completed_by": 1}  # fmt: skip


def task(*annotations: dict[str, Any], image: str = "/data/upload/7/0123abcd-img1.jpg") -> Task:
    return task_from_dict({"id": 1, "data": {"image": image}, "annotations": list(annotations)})


def failed(listed: Task, fingerprint: str | None = "compute") -> EntryState:
    """The error state a deterministic failure of converting ``listed`` records."""
    if fingerprint == "compute":
        chosen = select_annotation(listed)
        assert chosen is not None
        fingerprint = failure_fingerprint(listed, chosen, CONFIG_HASH, OPTIONS)
        assert fingerprint is not None
    return EntryState(
        1, None, None, OBSERVED, "error", "task 1: region r1: label 'weed' is not in the label set",
        "2024-05-01T12:00:01+00:00", None, fingerprint,
    )  # fmt: skip


def resync_syncs(
    listed: Task,
    state: EntryState | None,
    *,
    options: ConvertOptions = OPTIONS,
    config_hash: str | None = CONFIG_HASH,
    force: bool = False,
) -> bool:
    return needs_sync(listed, state, options, force=force, config_hash=config_hash)


def test_an_unchanged_deterministic_failure_is_not_synced_again() -> None:
    state = failed(task(annotation(11)))
    assert not resync_syncs(task(annotation(11)), state)


def test_the_same_instant_written_otherwise_is_unchanged() -> None:
    state = failed(task(annotation(11, "2024-05-01T10:00:00Z")))
    assert not resync_syncs(task(annotation(11, "2024-05-01T12:00:00.000000+02:00")), state)


def test_an_edited_annotation_is_synced() -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11, "2024-05-01T10:00:00.5Z")), state)


def test_another_selected_annotation_is_synced() -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11), annotation(12, "2024-05-02T10:00:00Z")), state)
    assert resync_syncs(task(annotation(12)), state)  # 11 deleted, 12 as old as it was


def test_a_changed_label_config_is_synced() -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11)), state, config_hash=OTHER_CONFIG_HASH)
    assert resync_syncs(task(annotation(11)), state, config_hash=None)  # not known: synced


def test_a_changed_image_url_is_synced() -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11), image="/data/upload/7/0123abcd-img2.jpg"), state)


@pytest.mark.parametrize(
    "change", [{"unknown_labels": "skip"}, {"max_pixels": 10**9}, {"time_limit": 120.0}]
)
def test_changed_conversion_options_are_synced(change: dict[str, Any]) -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11)), state, options=dataclasses.replace(OPTIONS, **change))


def test_a_rebuild_syncs_an_unchanged_failure() -> None:
    state = failed(task(annotation(11)))
    assert resync_syncs(task(annotation(11)), state, force=True)


def test_an_error_without_fingerprint_is_synced() -> None:
    """Records written before the field existed, and failures a retry may mend (downloads,
    unusable label config or task data) carry none: every resync retries them."""
    assert resync_syncs(task(annotation(11)), failed(task(annotation(11)), None))


def test_a_failed_task_without_annotation_is_synced_to_empty() -> None:
    assert resync_syncs(task(), failed(task(annotation(11))))


def test_a_current_entry_is_still_left_alone() -> None:
    state = EntryState(1, "img1.jpg", 11, OBSERVED, "ok", None, OBSERVED, CONFIG_HASH)
    assert not resync_syncs(task(annotation(11)), state)
    assert resync_syncs(task(annotation(11, "2024-05-01T13:00:00Z")), state)


def test_the_fingerprint_names_the_annotation_and_digests_the_rest() -> None:
    listed = task(annotation(11))
    chosen = select_annotation(listed)
    assert chosen is not None
    fingerprint = failure_fingerprint(listed, chosen, CONFIG_HASH, OPTIONS)
    assert fingerprint is not None
    assert fingerprint.startswith("annotation 11 updated 2024-05-01T10:00:00+00:00; inputs ")
    assert len(fingerprint) < 100
    prediction = dataclasses.replace(chosen, is_prediction=True)
    assert failure_fingerprint(listed, prediction, CONFIG_HASH, OPTIONS) != fingerprint


def test_no_fingerprint_without_a_timestamp_or_an_id() -> None:
    """An edit could not be told then: such a failure is retried by every resync."""
    undated = task_from_dict({"id": 1, "data": {"image": "a.jpg"},
                              "annotations": [{"id": 11, "result": []}]})  # fmt: skip
    (chosen,) = undated.annotations
    assert failure_fingerprint(undated, chosen, CONFIG_HASH, OPTIONS) is None
    nameless = dataclasses.replace(select_annotation(task(annotation(11))) or chosen, id=None)
    assert failure_fingerprint(task(annotation(11)), nameless, CONFIG_HASH, OPTIONS) is None

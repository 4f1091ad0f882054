"""Annotation and task dicts -> model objects, and which annotation is used."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ls_panoptic.model import Annotation, Task
from ls_panoptic.selection import (
    annotation_from_dict,
    parse_policy,
    parse_timestamp,
    select_annotation,
    task_from_dict,
)

REGION = {"id": "r1", "type": "polygonlabels", "value": {"points": [[0, 0], [5, 0], [0, 5]]}}


def ann(
    id: int,
    updated: str = "",
    created: str = "2024-01-01T00:00:00Z",
    **extra: Any,
) -> Annotation:
    return annotation_from_dict(
        {"id": id, "result": [REGION], "updated_at": updated, "created_at": created, **extra}
    )


def task(*annotations: Annotation, predictions: tuple[Annotation, ...] = ()) -> Task:
    return Task(1, {"image": "x.jpg"}, list(annotations), list(predictions))


def test_export_annotation() -> None:
    exported = {
        "id": 1001,
        "completed_by": 3,
        "result": [REGION],
        "was_cancelled": False,
        "ground_truth": True,
        "created_at": "2021-03-09T22:16:08.728353Z",
        "updated_at": "2021-03-09T22:16:08.728378Z",
        "lead_time": 4.288,
        "task": 1,
    }
    got = annotation_from_dict(exported)
    assert got == Annotation(
        id=1001,
        result=[REGION],
        updated_at="2021-03-09T22:16:08.728378Z",
        created_at="2021-03-09T22:16:08.728353Z",
        completed_by=3,
        ground_truth=True,
    )


def test_sdk_annotation_with_user_object_string_id_and_datetimes() -> None:
    stamp = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    got = annotation_from_dict(
        {
            "id": "17",
            "completed_by": {"id": 9, "email": "a@example.com", "first_name": "A"},
            "result": None,
            "updated_at": stamp,
            "created_at": stamp,
            "was_cancelled": None,
        }
    )
    assert (got.id, got.completed_by, got.result) == (17, 9, [])
    assert parse_timestamp(got.updated_at) == stamp


def test_user_object_without_id_is_an_unknown_user() -> None:
    assert annotation_from_dict({"completed_by": {"email": "x@example.com"}}).completed_by is None


def test_prediction_dict() -> None:
    got = annotation_from_dict(
        {"id": 5, "result": [REGION], "score": 0.9, "model_version": "v1"}, is_prediction=True
    )
    assert got.is_prediction and got.completed_by is None and got.updated_at == ""


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"result": "[]"}, "'result' must be a list, got str"),
        ({"result": [REGION, 3]}, "'result' item 1 is not an object"),
        ({"completed_by": "bob"}, "completed_by must be an integer, got 'bob'"),
        ({"id": True}, "annotation id must be an integer, got True"),
        ({"was_cancelled": "no"}, "was_cancelled must be true or false"),
        ({"updated_at": "yesterday"}, "updated_at: 'yesterday' is not an ISO 8601 timestamp"),
        ({"created_at": "2024-02-30T00:00:00Z"}, "created_at: .* not a valid timestamp"),
        ({"created_at": 1700000000}, "created_at must be a timestamp string"),
    ],
)
def test_bad_annotation_fields(d: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        annotation_from_dict(d)


def test_task_from_export_dict_ignores_drafts() -> None:
    got = task_from_dict(
        {
            "id": 7,
            "data": {"image": "/data/upload/1/0a1b2c3d-x.jpg"},
            "annotations": [{"id": 1, "result": [REGION], "completed_by": 2}],
            "predictions": [{"id": 4, "result": [], "model_version": "m"}],
            "drafts": [{"id": 99, "result": [REGION]}],
            "file_upload": "0a1b2c3d-x.jpg",
        }
    )
    assert got.id == 7 and got.data == {"image": "/data/upload/1/0a1b2c3d-x.jpg"}
    assert [a.id for a in got.annotations] == [1]
    assert [(p.id, p.is_prediction) for p in got.predictions] == [(4, True)]


def test_task_from_webhook_task_without_annotations() -> None:
    got = task_from_dict({"id": 3, "data": {"image": "x.jpg"}, "project": 1})
    assert got.annotations == [] and got.predictions == []


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ([], "a task must be an object, got list"),
        ({"id": 1}, "the task has no 'data' object"),
        ({"data": {}, "annotations": {"id": 1}}, "task annotations must be a list, got dict"),
        ({"data": {}, "annotations": [{"id": 1}, 5]}, r"annotations\[1\]: .*got int"),
        ({"data": {}, "predictions": ["x"]}, r"predictions\[0\]: an annotation must be an obj"),
        ({"id": "x", "data": {}}, "task id must be an integer, got 'x'"),
    ],
)
def test_bad_tasks(d: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task_from_dict(d)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T14:00:00+02:00", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01T07:30:00-0430", datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
        ("2024-05-01 12:00:00.5", datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
        ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, timezone.utc)),
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
    ],
)
def test_parse_timestamp(text: str, expected: datetime) -> None:
    assert parse_timestamp(text) == expected


def test_latest_by_parsed_time_not_by_string() -> None:
    # As strings "...T13:00:00+02:00" > "...T12:30:00Z", but it is 11:00 UTC.
    early = ann(1, "2024-05-01T13:00:00+02:00")
    late = ann(2, "2024-05-01T12:30:00Z")
    assert select_annotation(task(late, early)) is late
    micro = ann(3, "2024-05-01T12:30:00.000001Z")
    assert select_annotation(task(micro, late, early)) is micro


def test_latest_ties_by_created_at_then_id() -> None:
    same = "2024-05-01T12:00:00Z"
    a = ann(5, same, created="2024-04-01T00:00:00Z")
    b = ann(4, same, created="2024-04-02T00:00:00Z")
    assert select_annotation(task(a, b)) is b
    c = ann(6, same, created="2024-04-02T00:00:00Z")
    assert select_annotation(task(a, c, b)) is c


def test_missing_updated_at_falls_back_to_created_at() -> None:
    a = ann(1, "", created="2024-05-02T00:00:00Z")
    b = ann(2, "2024-05-01T00:00:00Z")
    assert select_annotation(task(a, b)) is a


def test_cancelled_never_used() -> None:
    kept = ann(1, "2024-05-01T00:00:00Z")
    skipped = ann(2, "2024-06-01T00:00:00Z", was_cancelled=True, ground_truth=True)
    assert select_annotation(task(kept, skipped)) is kept
    assert select_annotation(task(kept, skipped), "ground-truth") is kept
    assert select_annotation(task(skipped)) is None


def test_ground_truth_preferred_else_latest() -> None:
    truth = ann(1, "2024-05-01T00:00:00Z", ground_truth=True)
    newer = ann(2, "2024-06-01T00:00:00Z")
    assert select_annotation(task(truth, newer), "ground-truth") is truth
    assert select_annotation(task(truth, newer), "latest") is newer
    assert select_annotation(task(newer), "ground-truth") is newer


def test_annotator_policy_with_int_and_user_object() -> None:
    by3 = ann(1, "2024-05-01T00:00:00Z", completed_by=3)
    by3_sdk = ann(2, "2024-05-02T00:00:00Z", completed_by={"id": 3, "email": "c@x.org"})
    by4 = ann(3, "2024-06-01T00:00:00Z", completed_by=4)
    assert select_annotation(task(by3, by3_sdk, by4), "annotator:3") is by3_sdk
    assert select_annotation(task(by3, by4), "annotator:4") is by4
    assert select_annotation(task(by3, by4), "annotator:5") is None


def test_predictions_only_when_asked_and_no_usable_annotation() -> None:
    old = annotation_from_dict({"id": 1, "created_at": "2024-01-01T00:00:00Z"}, is_prediction=True)
    new = annotation_from_dict({"id": 2, "created_at": "2024-02-01T00:00:00Z"}, is_prediction=True)
    skipped = ann(9, "2024-03-01T00:00:00Z", was_cancelled=True)
    assert select_annotation(task(predictions=(old, new))) is None
    assert select_annotation(task(predictions=(old, new)), use_predictions=True) is new
    assert select_annotation(task(skipped, predictions=(old,)), use_predictions=True) is old
    human = ann(3, "2023-01-01T00:00:00Z", completed_by=1)
    assert select_annotation(task(human, predictions=(new,)), use_predictions=True) is human
    # another annotator's work exists: no fallback to the model
    assert select_annotation(task(human, predictions=(new,)), "annotator:2", True) is None


@pytest.mark.parametrize("policy", ["newest", "annotator:", "annotator:x", "ground_truth", ""])
def test_bad_policy(policy: str) -> None:
    with pytest.raises(ValueError, match=r"not one of: latest, ground-truth, annotator:<user id>"):
        select_annotation(task(), policy)


def test_parse_policy() -> None:
    assert parse_policy("latest") == ("latest", None)
    assert parse_policy(" ground-truth ") == ("ground-truth", None)
    assert parse_policy("annotator:12") == ("annotator", 12)


def test_empty_result_is_a_usable_annotation() -> None:
    empty = annotation_from_dict({"id": 1, "result": [], "updated_at": "2024-01-01T00:00:00Z"})
    assert select_annotation(task(empty)) is empty


def test_offsets_compare_across_days() -> None:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    stamps = [(base + timedelta(hours=h)).astimezone(timezone(timedelta(hours=-h))) for h in (1, 5)]
    a, b = (ann(i, s.isoformat()) for i, s in enumerate(stamps))
    assert select_annotation(task(b, a)) is b


def test_predictions_listed_by_id_are_counted_not_read() -> None:
    pred = {"id": 9, "result": [], "model_version": "m"}
    task = task_from_dict({"id": 1, "data": {}, "predictions": [3, pred, 4]})
    assert task.prediction_ids == 2
    assert [p.id for p in task.predictions] == [9]

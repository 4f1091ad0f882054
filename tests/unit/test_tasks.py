"""Annotation and task dicts -> model objects; timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from ls_panoptic.model import Annotation
from ls_panoptic.tasks import annotation_from_dict, parse_timestamp, task_from_dict

REGION = {"id": "r1", "type": "polygonlabels", "value": {"points": [[0, 0], [5, 0], [0, 5]]}}


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


def test_predictions_listed_by_id_are_counted_not_read() -> None:
    pred = {"id": 9, "result": [], "model_version": "m"}
    task = task_from_dict({"id": 1, "data": {}, "predictions": [3, pred, 4]})
    assert task.prediction_ids == 2
    assert [p.id for p in task.predictions] == [9]

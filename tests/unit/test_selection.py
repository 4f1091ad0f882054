"""Which annotation of a task is used."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ls_panoptic.model import Annotation, Task
from ls_panoptic.selection import parse_policy, select_annotation
from ls_panoptic.tasks import annotation_from_dict

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

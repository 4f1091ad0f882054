"""Reading JSON and JSON_MIN exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ls_panoptic.errors import ExportError
from ls_panoptic.export import parse_export, parse_export_text, read_export

REGION = {
    "x": 10,
    "y": 10,
    "width": 5,
    "height": 5,
    "rotation": 0,
    "rectanglelabels": ["tomato"],
    "original_width": 100,
    "original_height": 50,
}


def test_json_export_keeps_annotations_and_predictions() -> None:
    data = [
        {
            "id": 3,
            "data": {"image": "/data/upload/1/abcdef12-a.jpg"},
            "annotations": [
                {
                    "id": 9,
                    "result": [],
                    "completed_by": 1,
                    "updated_at": "2026-01-01T00:00:00Z",
                    "was_cancelled": False,
                }
            ],
            "predictions": [{"id": 4, "result": []}],
            "drafts": [{"result": []}],
        }
    ]
    tasks, fmt = parse_export(data)
    assert fmt == "JSON"
    assert tasks[0].id == 3 and [a.id for a in tasks[0].annotations] == [9]
    assert [p.id for p in tasks[0].predictions] == [4]


def test_json_min_rows_become_tasks_with_one_annotation_per_row() -> None:
    rows = [
        {
            "image": "/data/upload/1/abcdef12-a.jpg",
            "id": 5,
            "label": [REGION],
            "annotator": 2,
            "annotation_id": 11,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "lead_time": 3.2,
        },
        {
            "image": "/data/upload/1/abcdef12-a.jpg",
            "id": 5,
            "label": REGION,
            "annotator": "someone@example.com",
            "annotation_id": 12,
            "created_at": "2026-01-02T00:00:00Z",
            "updated_at": "2026-01-02T00:00:00Z",
        },
    ]
    tasks, fmt = parse_export(rows)
    assert fmt == "JSON_MIN" and len(tasks) == 1
    task = tasks[0]
    assert task.data == {"image": "/data/upload/1/abcdef12-a.jpg"}
    assert [a.id for a in task.annotations] == [11, 12]
    assert task.annotations[0].completed_by == 2 and task.annotations[1].completed_by is None
    item = task.annotations[1].result[0]
    assert item["type"] == "rectanglelabels" and item["original_width"] == 100
    assert "original_width" not in item["value"]


def test_empty_export_is_empty() -> None:
    assert parse_export([]) == ([], "JSON")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"not valid JSON \(line 1"),
        ('{"a": 1}', "expected a list of tasks"),
        ("[1, 2]", "every element must be an object"),
    ],
)
def test_bad_exports_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        parse_export_text(text, "export.json")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"nope\.json"):
        read_export(tmp_path / "nope.json")


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ExportError, match="not UTF-8"):
        read_export(path)


def test_read_export_from_file(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps([{"id": 1, "data": {"image": "a.png"}, "annotations": []}]))
    tasks, fmt = read_export(path)
    assert fmt == "JSON" and tasks[0].data["image"] == "a.png"


def test_json_min_row_without_annotation_gives_a_task_without_annotations() -> None:
    rows = [
        {
            "image": "/data/upload/1/abcdef12-b.jpg",
            "id": 6,
            "annotation_id": None,
            "annotator": None,
            "created_at": "",
            "updated_at": "",
        }
    ]
    tasks, fmt = parse_export(rows)
    assert fmt == "JSON_MIN" and tasks[0].annotations == []

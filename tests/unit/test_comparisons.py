"""Which pairs a task compares (:mod:`ls_panoptic.comparisons`), and how a task or one of its
annotations fails without costing the others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ls_panoptic.comparisons import compare_task, pairs_for, stuff_ids
from ls_panoptic.convert import Conversion
from ls_panoptic.errors import ImageError
from ls_panoptic.images import ImageIndex
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.tasks import task_from_dict

LABELS = labelset_from_labels({"leaf", "stem"})


def _box(x: float, width: int = 40, height: int = 30, label: str = "leaf") -> dict[str, Any]:
    value = {"x": x, "y": 0, "width": 40, "height": 100, "rectanglelabels": [label]}
    return {"id": f"r{x}", "type": "rectanglelabels", "value": value,
            "original_width": width, "original_height": height}  # fmt: skip


def _task(*annotations: dict[str, Any], predictions: list[Any] | None = None) -> Task:
    return task_from_dict({
        "id": 5, "data": {"image": "/data/upload/1/0a1b2c3d-img5.png"},
        "annotations": list(annotations), "predictions": predictions or [],
    })  # fmt: skip


def _ann(annotation_id: int, *result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": annotation_id, "result": list(result), "completed_by": annotation_id % 10,
            "updated_at": f"2026-11-0{annotation_id % 9 + 1}T00:00:00Z", **extra}  # fmt: skip


def _ids(pairs: list[Any]) -> list[tuple[int | None, int | None]]:
    return [(a.id, b.id) for a, b in pairs]


def test_pairs_under_each_mode() -> None:
    task = _task(
        _ann(13, _box(0)), _ann(11, _box(0), ground_truth=True), _ann(12, _box(0)),
        _ann(14, _box(0), was_cancelled=True),
        predictions=[{"id": 7, "result": [_box(10)]}, {"id": 8, "result": [_box(20)]}],
    )  # fmt: skip
    assert _ids(pairs_for(task, "annotators", "latest")) == [(11, 12), (11, 13), (12, 13)]
    assert _ids(pairs_for(task, "ground-truth", "latest")) == [(12, 11), (13, 11)]
    assert _ids(pairs_for(task, "predictions", "latest")) == [(7, 13), (8, 13)]
    assert _ids(pairs_for(task, "predictions", "annotator:2")) == [(7, 12), (8, 12)]
    assert pairs_for(_task(_ann(11, _box(0))), "annotators", "latest") == []
    assert pairs_for(_task(_ann(11, _box(0)), _ann(12, _box(0))), "ground-truth", "latest") == []


def test_predictions_listed_by_id_say_how_to_export_them() -> None:
    task = _task(_ann(11, _box(0)), predictions=[3, 4])
    out = compare_task(task, LABELS, ConvertOptions(), against="predictions")
    assert out.skipped is not None and "listed by id only" in out.skipped
    assert '"only_id": false' in out.skipped


def test_one_failing_annotation_leaves_the_other_pairs() -> None:
    task = _task(_ann(11, _box(0)), _ann(12, _box(5)), _ann(13, _box(0, label="tomato")))
    out = compare_task(task, LABELS, ConvertOptions())
    assert [(c.a.annotation_id, c.b.annotation_id) for c in out.comparisons] == [(11, 12)]
    assert [f.annotation_id for f in out.failures] == [13]
    assert "tomato" in out.failures[0].message and "annotation 13" in out.failures[0].message


def test_annotations_of_different_sizes_fail_as_a_pair() -> None:
    task = _task(_ann(11, _box(0)), _ann(12, _box(0, width=50)), _ann(13, _box(5)))
    out = compare_task(task, LABELS, ConvertOptions())
    assert [(c.a.annotation_id, c.b.annotation_id) for c in out.comparisons] == [(11, 13)]
    assert len(out.failures) == 2
    assert all("cannot be compared" in f.message for f in out.failures)


def test_a_task_that_cannot_be_compared_says_why() -> None:
    no_url = task_from_dict({"id": 6, "data": {"text": "x"},
                             "annotations": [_ann(11, _box(0)), _ann(12, _box(0))]})  # fmt: skip
    assert "image" in compare_task(no_url, LABELS, ConvertOptions()).failures[0].message
    single = compare_task(_task(_ann(11, _box(0))), LABELS, ConvertOptions())
    assert single.skipped == "task 5: fewer than two usable annotations"


def test_an_image_not_given_is_skipped_and_a_given_one_is_used(tmp_path: Path) -> None:
    task = _task(_ann(11, _box(0)), _ann(12, _box(0)))
    (tmp_path / "other.png").write_bytes(b"")
    missing = compare_task(task, LABELS, ConvertOptions(), images=ImageIndex.from_folder(tmp_path))
    assert missing.skipped is not None and "not among the images given" in missing.skipped
    Image.new("RGB", (40, 30)).save(tmp_path / "img5.png")
    found = compare_task(task, LABELS, ConvertOptions(), images=ImageIndex.from_folder(tmp_path))
    assert found.comparisons[0].quality.overall.pq == 1.0


def test_of_annotation_refuses_an_unreadable_task() -> None:
    task = Task(id=9, data={}, problem="the task's data is not an object")
    annotation = _task(_ann(11, _box(0))).annotations[0]
    with pytest.raises(ImageError, match="task 9"):
        Conversion.of_annotation(task, annotation, ConvertOptions())


def test_stuff_ids_are_background_and_the_stuff_labels() -> None:
    options = ConvertOptions(stuff=frozenset({"stem", "sky"}))
    assert stuff_ids(LABELS, options) == {LABELS.background_id, LABELS.class_id("stem")}

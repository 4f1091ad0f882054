"""The per-image time limit (``ConvertOptions.time_limit``): a monotonic-clock deadline checked
between regions and inside a long polygon sweep, failing that image with an ``ImageError``."""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import ls_panoptic.convert as convert_module
from ls_panoptic.batch import convert_tasks
from ls_panoptic.convert import convert_task
from ls_panoptic.errors import ImageError, LimitError, Remedy
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.tasks import task_from_dict

LABELS = labelset_from_labels({"leaf", "stem"})


def _zigzag(vertices: int) -> list[list[float]]:
    """Percent points crossing every row once per vertex: ``vertices`` x rows crossings."""
    return [[100.0 * n / vertices, 0.0 if n % 2 else 100.0] for n in range(vertices)]


def _task(task_id: int, *items: dict[str, Any]) -> Task:
    return task_from_dict(
        {
            "id": task_id,
            "data": {"image": f"/data/upload/1/0a1b2c3d-img{task_id}.png"},
            "annotations": [{"id": 100 + task_id, "result": list(items)}],
        }
    )


def _polygon(region_id: str, points: list[list[float]], width: int, height: int) -> dict[str, Any]:
    value = {"points": points, "polygonlabels": ["leaf"]}
    return {"id": region_id, "type": "polygonlabels", "original_width": width,
            "original_height": height, "value": value}  # fmt: skip


def _box(region_id: str, width: int = 40, height: int = 30) -> dict[str, Any]:
    value = {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": ["stem"]}
    return {"id": region_id, "type": "rectanglelabels", "original_width": width,
            "original_height": height, "value": value}  # fmt: skip


# 20,000 vertices over 3,000 rows: 60 million crossings, seconds of work without a limit
HUGE = _polygon("p1", _zigzag(20_000), 4000, 3000)


def test_a_big_polygon_past_a_tiny_limit_fails_its_image_naming_the_region() -> None:
    started = time.perf_counter()
    with pytest.raises(LimitError) as info:
        convert_task(_task(7, HUGE), "x.png", LABELS, ConvertOptions(time_limit=0.2))
    elapsed = time.perf_counter() - started
    assert str(info.value) == (
        "task 7: conversion took longer than the 0.2 s limit (stopped at region p1)"
    )  # what to do is the front ends' to say (tests/unit/test_remedies.py)
    assert (info.value.task_id, info.value.remedy, info.value.limit) == (7, Remedy.TIME_LIMIT, 0.2)
    assert elapsed < 2.0  # stopped inside the sweep, not after it


def test_the_limit_is_checked_inside_the_polygon_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock that passes the limit only after the region has started: the error must
    come from a checkpoint of the polygon sweep, not from the check between regions."""
    calls: list[int] = []

    def clock() -> float:
        calls.append(1)
        return 0.0 if len(calls) <= 4 else 100.0  # start, region p1, two bands; then late

    monkeypatch.setattr(convert_module, "time", SimpleNamespace(monotonic=clock))
    with pytest.raises(ImageError, match=r"stopped at region p1\)") as info:
        convert_task(_task(7, HUGE), "x.png", LABELS, ConvertOptions(time_limit=30))
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "polygon_runs" in frames
    assert "30 s limit" in str(info.value)
    assert len(calls) == 5


def test_the_limit_is_checked_between_regions(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # each look at the clock takes a second
        return now[0]

    monkeypatch.setattr(convert_module, "time", SimpleNamespace(monotonic=clock))
    task = _task(7, _box("r1"), _box("r2"), _box("r3"))
    with pytest.raises(ImageError, match=r"2\.5 s limit \(stopped at region r3\)"):
        convert_task(task, "x.png", LABELS, ConvertOptions(time_limit=2.5))
    now[0] = 0.0
    with pytest.raises(ImageError, match=r"3\.5 s limit \(stopped before composing the mask\)"):
        convert_task(task, "x.png", LABELS, ConvertOptions(time_limit=3.5))
    now[0] = 0.0
    entry = convert_task(task, "x.png", LABELS, ConvertOptions(time_limit=4.5))
    assert entry is not None and entry.panoptic_mask.shape == (30, 40)


def test_no_limit_and_a_generous_limit_give_the_same_entry() -> None:
    task = _task(7, _polygon("p1", _zigzag(50), 64, 48), _box("r2", 64, 48))
    free = convert_task(task, "x.png", LABELS, ConvertOptions())
    limited = convert_task(task, "x.png", LABELS, ConvertOptions(time_limit=60))
    assert free is not None and limited is not None
    assert (free.panoptic_mask == limited.panoptic_mask).all()
    assert free.inst2class == limited.inst2class


def test_other_images_of_a_batch_still_convert(tmp_path: Path) -> None:
    tasks = [_task(1, _box("r1")), _task(2, HUGE), _task(3, _box("r1"))]
    output = tmp_path / "gt.pkl"
    report = convert_tasks(tasks, output, LABELS, ConvertOptions(time_limit=0.5))
    assert report.written == 2 and not report.aborted
    assert [(f.task_id, f.key) for f in report.failures] == [(2, "img2.png")]
    assert "task 2: conversion took longer than the 0.5 s limit" in report.failures[0].message
    sidecar = json.loads(report.sidecar.read_text())
    assert sorted(sidecar["entries"]) == ["img1.png", "img3.png"]
    assert sidecar["options"]["time_limit"] == 0.5


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, math.inf, math.nan, True, "30"])
def test_a_time_limit_must_be_a_positive_finite_number_of_seconds(bad: Any) -> None:
    with pytest.raises(ValueError, match="time_limit must be None"):
        ConvertOptions(time_limit=bad)


def test_time_limit_defaults_to_none_and_accepts_ints() -> None:
    assert ConvertOptions().time_limit is None
    assert ConvertOptions(time_limit=30).time_limit == 30

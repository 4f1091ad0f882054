"""One selection and one parse per task: :class:`ls_panoptic.convert.Conversion` tells whether
the image is needed from the parse the conversion then reuses (the worker asks first; the
batch selects while planning keys and parses while converting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import ls_panoptic.convert as convert_module
from ls_panoptic.batch import convert_tasks
from ls_panoptic.convert import Conversion
from ls_panoptic.errors import RegionError, Remedy
from ls_panoptic.images import ImageInfo
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions, Task
from ls_panoptic.tasks import task_from_dict

LABELS = labelset_from_labels({"leaf", "stem"})
BOX = {"x": 10, "y": 10, "width": 50, "height": 50, "rectanglelabels": ["leaf"]}
SIZE = {"original_width": 40, "original_height": 30}
SIZED = {"id": "r1", "type": "rectanglelabels", "value": BOX, **SIZE}
UNSIZED = {"id": "r1", "type": "rectanglelabels", "value": BOX}


def _task(task_id: int, *items: dict[str, Any]) -> Task:
    return task_from_dict({
        "id": task_id, "data": {"image": f"/data/upload/1/0a1b2c3d-img{task_id}.png"},
        "annotations": [{"id": 100 + task_id, "result": list(items)}],
    })  # fmt: skip


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(convert_module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_module, name, counted)
    return calls


def test_needs_image_and_run_share_one_selection_and_one_parse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    selected, parsed = (
        _counting(monkeypatch, "select_annotation"),
        _counting(monkeypatch, "read_result"),
    )
    conversion = Conversion.of(_task(7, SIZED), ConvertOptions())
    assert conversion is not None and not conversion.needs_image()
    entry = conversion.run("img7.png", LABELS)
    assert entry.panoptic_mask.shape == (30, 40) and entry.meta["annotation_id"] == 107
    assert (len(selected), len(parsed)) == (1, 1)


def test_without_a_size_the_image_is_needed_and_gives_it() -> None:
    conversion = Conversion.of(_task(7, UNSIZED), ConvertOptions())
    assert conversion is not None and conversion.needs_image()
    with pytest.raises(RegionError) as info:
        conversion.run("img7.png", LABELS)
    assert str(info.value).startswith("task 7: region r1: has no original_width")
    assert info.value.remedy is Remedy.IMAGE
    entry = conversion.run("img7.png", LABELS, ImageInfo(Path("img7.png"), 20, 60))
    assert entry.panoptic_mask.shape == (20, 60)


def test_orientation_file_needs_the_image_and_a_malformed_result_fails_when_asked() -> None:
    conversion = Conversion.of(_task(7, SIZED), ConvertOptions(orientation="file"))
    assert conversion is not None and conversion.needs_image()
    broken = Conversion.of(_task(8, {"id": "r1", "type": "rectanglelabels", "value": {"x": 1}}),
                           ConvertOptions())  # fmt: skip
    assert broken is not None
    with pytest.raises(RegionError, match=r"^task 8: region r1: region has no label$"):
        broken.needs_image()
    assert Conversion.of(task_from_dict({"id": 9, "data": {}}), ConvertOptions()) is None


def test_a_batch_selects_and_parses_each_task_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    selected, parsed = (
        _counting(monkeypatch, "select_annotation"),
        _counting(monkeypatch, "read_result"),
    )
    tasks = [
        _task(n, {"id": "r1", "type": "rectanglelabels", "value": BOX, **SIZE}) for n in (1, 2)
    ]
    report = convert_tasks(tasks, tmp_path / "gt.pkl", LABELS, ConvertOptions())
    assert report.written == 2 and (len(selected), len(parsed)) == (2, 2)

"""``ls-panoptic convert`` on the shapes of data Label Studio writes in the field (DESIGN 3.8).

Each export here is built in the shape a real Label Studio 1.23.2 export has (facts recorded in
``tests/e2e/conftest.py`` and ``tests/e2e/test_field_data.py``, which make the same kinds
through a real server); the conversions are checked pixel by pixel against what the regions
say, computed here.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from cli.main import cli

SIZE = {"original_width": 40, "original_height": 20}
BOX = {"x": 25.0, "y": 25.0, "width": 50.0, "height": 50.0, "rotation": 0}  # cols 10-29, rows 5-14
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Rectangle name="rect" toName="image"/>
  <KeyPoint name="kp" toName="image"/>
  <Labels name="label" toName="image"><Label value="car"/><Label value="tree"/></Labels>
</View>"""


def _task(task_id: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    annotation = {"id": task_id * 10, "result": result, "updated_at": "2026-01-01T00:00:00Z"}
    return {
        "id": task_id,
        "data": {"image": f"/data/upload/1/0123abcd-img{task_id}.png"},
        "annotations": [annotation],
        **extra,
    }


def _convert(tmp_path: Path, export: Any, *args: str) -> tuple[Result, dict[str, Any], Any]:
    path, out, config = tmp_path / "export.json", tmp_path / "gt.pkl", tmp_path / "config.xml"
    path.write_text(json.dumps(export))
    config.write_text(CONFIG)
    result = CliRunner().invoke(
        cli, ["convert", str(path), "-o", str(out), "--label-config", str(config), "-q", *args]
    )
    assert result.exit_code in (0, 1), result.output
    with out.open("rb") as file:
        snapshot = pickle.load(file)
    return result, snapshot, json.loads(out.with_suffix(".meta.json").read_text())


def _box_mask() -> Any:
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True
    return mask


def _assert_one_car(entry: dict[str, Any]) -> None:
    mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
    assert mask.shape == (20, 40)
    cars = [i for i, c in inst2class.items() if c == 0]
    assert len(cars) == 1 and np.array_equal(mask == cars[0], _box_mask())


def test_predictions_listed_by_id_are_counted_and_the_export_converts(tmp_path: Path) -> None:
    box = {"id": "r", "type": "rectanglelabels", "from_name": "rect", "to_name": "image"}
    result = [{**box, "value": {**BOX, "rectanglelabels": ["car"]}, **SIZE}]
    export = [_task(1, result, predictions=[7, 8]), _task(2, result, predictions=[9])]
    run, snapshot, _sidecar = _convert(tmp_path, export)
    assert run.exit_code == 0 and sorted(snapshot) == ["img1.png", "img2.png"]
    assert "predictions listed by id only" in run.output and ": 3, ignored" in run.output


def test_json_min_rows_of_a_tool_and_its_labels_make_one_region(tmp_path: Path) -> None:
    """JSON_MIN repeats a ``<Rectangle>`` + ``<Labels>`` region under both control names,
    without region ids; the labels' copy carries the geometry too."""
    row = {
        "id": 1,
        "image": "/data/upload/1/0123abcd-img1.png",
        "annotation_id": 10,
        "rect": [{**BOX, **SIZE}],
        "label": [{**BOX, "labels": ["car"], **SIZE}],
    }
    run, snapshot, _sidecar = _convert(tmp_path, [row])
    assert run.exit_code == 0, run.output
    _assert_one_car(snapshot["img1.png"])


def test_a_region_without_size_takes_its_siblings_and_keypoint_labels_are_ignored(
    tmp_path: Path,
) -> None:
    result = [
        {"id": "r", "type": "rectangle", "from_name": "rect", "to_name": "image", "value": BOX},
        {"id": "r", "type": "labels", "from_name": "label", "value": {**BOX, "labels": ["car"]}},
        {"id": "k", "type": "keypoint", "from_name": "kp", "value": {"x": 5, "y": 5}, **SIZE},
        {"id": "k", "type": "labels", "from_name": "label", "value": {"x": 5, "y": 5,
                                                                     "labels": ["tree"]}, **SIZE},
    ]  # fmt: skip
    run, snapshot, sidecar = _convert(tmp_path, [_task(1, result)])
    assert run.exit_code == 0, run.output
    _assert_one_car(snapshot["img1.png"])
    assert sidecar["entries"]["img1.png"]["ignored"] == {"keypoint": 1}


def test_without_any_size_the_image_gives_it_and_else_the_message_names_images(
    tmp_path: Path,
) -> None:
    result = [{"id": "r", "type": "rectanglelabels", "value": {**BOX, "rectanglelabels": ["car"]}}]
    run, snapshot, sidecar = _convert(tmp_path, [_task(1, result)])
    assert run.exit_code == 1 and snapshot == {}
    assert sidecar["failures"][0]["message"] in run.output  # the CLI adds what to do:
    assert "pass the image (convert --images)" in run.output
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 20)).save(images / "img1.png")
    run, snapshot, _sidecar = _convert(tmp_path, [_task(1, result)], "--images", str(images))
    assert run.exit_code == 0, run.output
    _assert_one_car(snapshot["img1.png"])


def test_an_oriented_box_given_by_its_corners_is_that_polygon(tmp_path: Path) -> None:
    corners = [[25.0, 25.0], [75.0, 25.0], [75.0, 75.0], [25.0, 75.0]]
    value = {"points": corners, "closed": True, "rectanglelabels": ["car"]}
    result = [{"id": "o", "type": "rectanglelabels", "value": value, **SIZE}]
    run, snapshot, _sidecar = _convert(tmp_path, [_task(1, result)])
    assert run.exit_code == 0, run.output
    _assert_one_car(snapshot["img1.png"])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_region_saved_in_a_rotated_view_is_drawn_unrotated(tmp_path: Path, rotation: int) -> None:
    """Label Studio keeps coordinates in the unrotated image whatever ``image_rotation`` says
    (measured in its editor: tests/e2e/test_editor_rotation.py); it is recorded in the meta."""
    item = {"id": "r", "type": "rectanglelabels", "value": {**BOX, "rectanglelabels": ["car"]}}
    result = [{**item, **SIZE, "image_rotation": rotation}]
    run, snapshot, sidecar = _convert(tmp_path, [_task(1, result)])
    assert run.exit_code == 0, run.output
    _assert_one_car(snapshot["img1.png"])
    assert sidecar["entries"]["img1.png"]["image_rotation"] == [rotation]


def test_an_annotation_with_no_area_region_is_all_background(tmp_path: Path) -> None:
    result = [{"id": "c", "type": "choices", "value": {"choices": ["empty"]}, **SIZE}]
    run, snapshot, _sidecar = _convert(tmp_path, [_task(1, result)])
    assert run.exit_code == 0, run.output
    entry = snapshot["img1.png"]
    assert entry["inst2class"] == {1: 2} and (entry["panoptic_mask"] == 1).all()


def test_one_unreadable_task_fails_alone(tmp_path: Path) -> None:
    box = {"id": "r", "type": "rectanglelabels", "value": {**BOX, "rectanglelabels": ["car"]}}
    good = _task(1, [{**box, **SIZE}])
    bad = {**_task(2, []), "annotations": [{"id": 5, "result": [], "updated_at": "yesterday"}]}
    run, snapshot, sidecar = _convert(tmp_path, [good, bad])
    assert run.exit_code == 1 and sorted(snapshot) == ["img1.png"]
    (failure,) = sidecar["failures"]
    assert failure["task_id"] == 2 and "updated_at" in failure["message"]


def test_a_report_gives_one_line_per_image_with_counts_first(tmp_path: Path) -> None:
    items = [
        {
            "id": f"r{n:03d}",
            "type": "rectanglelabels",
            "value": {**BOX, "rectanglelabels": ["car", "tree"]},
            **SIZE,
        }
        for n in range(120)
    ]
    run, _snapshot, sidecar = _convert(tmp_path, [_task(1, items)])
    lines = [line for line in run.output.splitlines() if line.startswith("warning: img1.png")]
    assert len(lines) == 1, run.output
    assert "120 regions with several labels (the first is used): r000, r001" in lines[0]
    assert "and 115 more" in lines[0] and "119 regions hidden by others and dropped" in lines[0]
    assert len(lines[0]) < 400
    assert len(sidecar["entries"]["img1.png"]["warnings"]) == 2

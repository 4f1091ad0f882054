"""Parsing Label Studio result lists into regions."""

from __future__ import annotations

from typing import Any

import pytest

from ls_panoptic.errors import RegionError
from ls_panoptic.parse import parse_result

SIZE = {"original_width": 640, "original_height": 480, "image_rotation": 0}


def _item(rid: str, type_: str, value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "type": type_,
        "from_name": "x",
        "to_name": "image",
        "value": value,
        **SIZE,
        **extra,
    }


POLY = {"points": [[10, 10], [20, 10], [15, 20]]}


def test_every_area_kind_is_recognised_in_result_order() -> None:
    result = [
        _item("b", "brushlabels", {"format": "rle", "rle": [0], "brushlabels": ["leaf"]}),
        _item(
            "m",
            "bitmasklabels",
            {"imageDataURL": "data:image/png;base64,", "bitmasklabels": ["stem"]},
        ),
        _item("p", "polygonlabels", {**POLY, "polygonlabels": ["leaf"]}),
        _item(
            "r",
            "rectanglelabels",
            {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0, "rectanglelabels": ["tomato"]},
        ),
        _item(
            "e",
            "ellipselabels",
            {
                "x": 1,
                "y": 2,
                "radiusX": 3,
                "radiusY": 4,
                "rotation": 0,
                "ellipselabels": ["tomato"],
            },
        ),
    ]
    parsed = parse_result(result, task_id=7)
    assert [(r.id, r.kind, r.label, r.order) for r in parsed.regions] == [
        ("b", "brush", "leaf", 0),
        ("m", "bitmask", "stem", 1),
        ("p", "polygon", "leaf", 2),
        ("r", "rectangle", "tomato", 3),
        ("e", "ellipse", "tomato", 4),
    ]
    assert all((r.height, r.width) == (480, 640) for r in parsed.regions)


def test_geometry_and_labels_items_are_joined_by_region_id() -> None:
    result = [
        _item("k", "keypointlabels", {"x": 1, "y": 1, "keypointlabels": ["leaf"]}),
        _item("p1", "polygon", POLY),
        _item("c", "choices", {"choices": ["ok"]}),
        _item("p1", "labels", {**POLY, "labels": ["stem"]}),
    ]
    parsed = parse_result(result)
    assert len(parsed.regions) == 1
    region = parsed.regions[0]
    assert (region.kind, region.label, region.order) == ("polygon", "stem", 1)
    assert parsed.ignored == {"keypointlabels": 1, "choices": 1}


def test_several_labels_use_the_first_and_warn() -> None:
    parsed = parse_result([_item("p", "polygonlabels", {**POLY, "polygonlabels": ["a", "b"]})])
    assert parsed.regions[0].label == "a"
    assert "'a'" in parsed.warnings[0] and "p" in parsed.warnings[0]


def test_items_without_type_or_id_are_inferred_json_min_style() -> None:
    result = [
        {"value": {"x": 1, "y": 2, "width": 3, "height": 4, "rectanglelabels": ["t"]}, **SIZE}
    ]
    region = parse_result(result).regions[0]
    assert (region.id, region.kind, region.label) == ("#0", "rectangle", "t")


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("not a list", "not a list"),
        ([42], "not an object"),
        ([_item("p", "polygon", POLY)], "no label"),
        (
            [
                {
                    **_item("p", "polygonlabels", {**POLY, "polygonlabels": ["a"]}),
                    "original_width": None,
                }
            ],
            "original_width is missing",
        ),
        (
            [
                {
                    **_item("p", "polygonlabels", {**POLY, "polygonlabels": ["a"]}),
                    "original_height": -5,
                }
            ],
            "original_height must be a positive integer",
        ),
        ([_item("q", "labels", {"labels": ["a"]})], "labels without any geometry"),
    ],
)
def test_malformed_items_name_task_region_and_reason(result: Any, message: str) -> None:
    with pytest.raises(RegionError, match=message) as info:
        parse_result(result, task_id=12)
    assert str(info.value).startswith("task 12: region ")


def test_image_rotation_is_carried_to_the_region() -> None:
    item = _item("p", "polygonlabels", {**POLY, "polygonlabels": ["a"]}, image_rotation=90)
    assert parse_result([item]).regions[0].image_rotation == 90


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"x": 1, "y": 2, "width": 0.5, "keypointlabels": ["leaf"]}, "keypointlabels"),
        ({"x": 1, "y": 2, "width": 0.5}, "keypoint"),
        ({"x": 1, "y": 2, "width": 3, "height": 4}, "rectanglelabels"),
        ({"x": 1, "y": 2, "radiusX": 3, "radiusY": 4}, "ellipselabels"),
        ({"choices": ["a"]}, "unknown"),
    ],
)
def test_type_inference_never_mistakes_keypoints_for_rectangles(
    value: dict[str, Any], expected: str
) -> None:
    from ls_panoptic.parse import infer_type

    assert infer_type(value) == expected

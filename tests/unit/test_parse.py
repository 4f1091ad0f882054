"""Parsing Label Studio result lists into regions."""

from __future__ import annotations

from typing import Any

import pytest

from ls_panoptic.errors import ImageError, RegionError
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


def test_several_labels_use_the_first_and_keep_the_others_for_the_report() -> None:
    parsed = parse_result([_item("p", "polygonlabels", {**POLY, "polygonlabels": ["a", "b"]})])
    assert (parsed.regions[0].label, parsed.regions[0].extra_labels) == ("a", ("b",))


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


def _bare(value: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A result item as the API, imports or old versions make it: no size, maybe no id."""
    return {"from_name": "label", "to_name": "image", "value": value, **extra}


def test_a_region_without_size_takes_the_size_its_siblings_give() -> None:
    result = [
        _bare({**POLY, "polygonlabels": ["a"]}, id="p1", type="polygonlabels"),
        _item("k", "keypointlabels", {"x": 1, "y": 1, "keypointlabels": ["a"]}),
    ]
    parsed = parse_result(result, image_size=(10, 20))
    assert [(r.height, r.width) for r in parsed.regions] == [(480, 640)]
    assert (parsed.size, parsed.declared) == ((480, 640), True)


def test_a_region_without_size_takes_the_image_size_when_nothing_else_gives_one() -> None:
    result = [_bare({**POLY, "polygonlabels": ["a"]}, id="p1", type="polygonlabels")]
    parsed = parse_result(result, image_size=(30, 40))
    assert [(r.height, r.width) for r in parsed.regions] == [(30, 40)]
    assert (parsed.size, parsed.declared) == ((30, 40), False)
    with pytest.raises(RegionError, match="region p1: has no original_width") as info:
        parse_result(result, task_id=4)
    assert "image" in str(info.value)


def test_an_annotation_without_regions_has_the_size_of_its_other_results() -> None:
    parsed = parse_result([_item("c", "choices", {"choices": ["empty"]})])
    assert (parsed.regions, parsed.size, parsed.declared) == ([], (480, 640), True)
    assert parse_result([]).size is None


def test_regions_that_disagree_on_the_size_fail_naming_them() -> None:
    result = [
        _item("a", "polygonlabels", {**POLY, "polygonlabels": ["x"]}),
        {**_item("b", "polygonlabels", {**POLY, "polygonlabels": ["x"]}), "original_width": 64},
    ]
    with pytest.raises(ImageError, match=r"64x480 \(region b\); 640x480 \(region a\)"):
        parse_result(result, task_id=3)


def test_json_min_rows_of_a_tool_and_its_labels_are_one_region() -> None:
    box = {"x": 1, "y": 2, "width": 3, "height": 4, "rotation": 0}
    result = [
        _bare(box, from_name="rect", type="rectanglelabels", **SIZE),
        _bare({**box, "labels": ["car"]}, from_name="label", type="rectanglelabels", **SIZE),
        _bare(box, from_name="rect", type="rectanglelabels", **SIZE),  # another box, same place
    ]
    parsed = parse_result(result[:2])
    assert [(r.id, r.kind, r.label) for r in parsed.regions] == [("#0", "rectangle", "car")]
    with pytest.raises(RegionError, match="region #2: region has no label"):
        parse_result(result)  # one control twice: two regions, not one


def test_a_labels_item_on_a_keypoint_is_ignored_and_counted_once() -> None:
    result = [
        _item("k1", "keypoint", {"x": 5, "y": 5, "width": 1}),
        _item("k1", "labels", {"x": 5, "y": 5, "width": 1, "labels": ["a"]}),
        _item("q", "labels", {"labels": ["a"]}),
        _item("p", "polygonlabels", {**POLY, "polygonlabels": ["a"]}),
        _item("p", "choices", {"choices": ["ok"]}),  # a per-region choice
    ]
    parsed = parse_result(result, task_id=1)
    assert [r.id for r in parsed.regions] == ["p"]
    assert parsed.ignored == {"keypoint": 1, "labels": 1, "choices": 1}


def test_magic_wand_regions_are_brush_masks() -> None:
    result = [
        _item("w", "magicwand", {"format": "rle", "rle": [0]}),
        _item("w", "labels", {"format": "rle", "rle": [0], "labels": ["cloud"]}),
    ]
    (region,) = parse_result(result).regions
    assert (region.kind, region.label) == ("brush", "cloud")

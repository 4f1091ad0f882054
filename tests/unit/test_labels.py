"""Label configs and id2label mappings -> LabelSet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ls_panoptic.errors import LabelConfigError
from ls_panoptic.labels import (
    LabelSet,
    labelset_from_config,
    labelset_from_labels,
    labelset_from_mapping,
    load_mapping_file,
)

BRUSH_AND_POLYGON = """
<View>
  <Header value="Segment the plant"/>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="brush" toName="image">
    <Label value="leaf" background="#00ff00"/>
    <Label value="stem" background="#aa5500"/>
  </BrushLabels>
  <PolygonLabels name="poly" toName="image" strokeWidth="3">
    <Label value="stem"/>
    <Label value="tomato"/>
  </PolygonLabels>
</View>
"""

ALL_AREA_CONTROLS = """
<View>
  <Image name="img" value="$photo"/>
  <RectangleLabels name="rect" toName="img">
    <Label value="car"/><Label value="bus"/>
  </RectangleLabels>
  <EllipseLabels name="ell" toName="img"><Label value="wheel"/><Label value="car"/></EllipseLabels>
  <BitmaskLabels name="bm" toName="img"><Label value="road"/></BitmaskLabels>
  <KeyPointLabels name="kp" toName="img"><Label value="nose"/></KeyPointLabels>
  <Choices name="weather" toName="img"><Choice value="sunny"/></Choices>
</View>
"""

GENERIC_LABELS_WITH_TOOLS = """
<View>
  <Labels name="label" toName="image">
    <Label value="wall"/>
    <Label value="Background"/>
    <Label value="floor" alias="ground"/>
  </Labels>
  <Polygon name="polygon" toName="image"/>
  <Brush name="brush" toName="image"/>
  <Image name="image" value="$image"/>
</View>
"""

TWO_IMAGES = """
<View>
  <Image name="left" value="$left"/>
  <Image name="right" value="$right"/>
  <BrushLabels name="a" toName="left"><Label value="cat"/></BrushLabels>
  <BrushLabels name="b" toName="right"><Label value="dog"/></BrushLabels>
</View>
"""


def test_brush_and_polygon_labels_in_order_deduplicated_background_appended() -> None:
    labels = labelset_from_config(BRUSH_AND_POLYGON)
    assert labels.id2label == {0: "leaf", 1: "stem", 2: "tomato", 3: "background"}
    assert labels.background_id == 3
    assert (labels.image_name, labels.image_value) == ("image", "image")
    assert labels.labels == ["leaf", "stem", "tomato", "background"]
    assert labels.class_id("tomato") == 2
    assert labels.class_id("Tomato") is None


def test_area_controls_only_keypoints_and_choices_ignored() -> None:
    labels = labelset_from_config(ALL_AREA_CONTROLS)
    assert labels.labels == ["car", "bus", "wheel", "road", "background"]
    assert labels.image_value == "photo"


def test_generic_labels_background_kept_in_place_and_alias_used() -> None:
    labels = labelset_from_config(GENERIC_LABELS_WITH_TOOLS)
    assert labels.id2label == {0: "wall", 1: "Background", 2: "ground"}
    assert labels.background_id == 1


def test_tag_and_attribute_case_is_ignored() -> None:
    xml = (
        '<view><image name="i" value="$x"/><brushlabels name="b" toname="i">'
        '<label value="a"/></brushlabels></view>'
    )
    assert labelset_from_config(xml).labels == ["a", "background"]


def test_several_images_need_a_choice() -> None:
    with pytest.raises(LabelConfigError, match=r"several <Image> tags \('left', 'right'\)"):
        labelset_from_config(TWO_IMAGES)
    right = labelset_from_config(TWO_IMAGES, image_name="right")
    assert right.labels == ["dog", "background"]
    assert (right.image_name, right.image_value) == ("right", "right")


def test_several_images_but_one_labelled_is_picked() -> None:
    xml = TWO_IMAGES.replace(
        '<BrushLabels name="b" toName="right"><Label value="dog"/></BrushLabels>', ""
    )
    assert labelset_from_config(xml).image_name == "left"


def test_unknown_image_name() -> None:
    with pytest.raises(LabelConfigError, match=r"no <Image name='middle'>; its images: 'left'"):
        labelset_from_config(TWO_IMAGES, image_name="middle")


def test_controls_for_another_object_do_not_count() -> None:
    xml = """<View><Image name="image" value="$image"/><Text name="t" value="$text"/>
      <Labels name="ner" toName="t"><Label value="PERSON"/></Labels>
      <BrushLabels name="b" toName="image"><Label value="cell"/></BrushLabels></View>"""
    assert labelset_from_config(xml).labels == ["cell", "background"]


def test_value_list_and_static_image_value() -> None:
    xml = (
        '<View><Image name="i" valueList="$pages"/><BrushLabels name="b" toName="i">'
        '<Label value="x"/></BrushLabels></View>'
    )
    assert labelset_from_config(xml).image_value == "pages"
    static = xml.replace('valueList="$pages"', 'value="https://example.com/a.jpg"')
    assert labelset_from_config(static).image_value is None


def test_malformed_xml_names_the_line() -> None:
    xml = '<View>\n  <Image name="image" value="$image">\n  <BrushLabels name="b"/>\n</View>'
    with pytest.raises(LabelConfigError, match=r"not well-formed XML at line 4, column \d+"):
        labelset_from_config(xml)


def test_no_image_tag() -> None:
    with pytest.raises(LabelConfigError, match="no <Image> tag"):
        labelset_from_config('<View><Text name="t" value="$t"/></View>')


def test_no_labels_points_to_mapping_file() -> None:
    xml = (
        '<View><Image name="image" value="$image"/>'
        '<BrushLabels name="b" toName="image" value="$labels"/></View>'
    )
    with pytest.raises(LabelConfigError, match=r"toName='image'.*id2label mapping file"):
        labelset_from_config(xml)


def test_two_background_spellings_are_an_error() -> None:
    xml = (
        '<View><Image name="i" value="$i"/><BrushLabels name="b" toName="i">'
        '<Label value="background"/><Label value="Background"/></BrushLabels></View>'
    )
    with pytest.raises(LabelConfigError, match="several background labels"):
        labelset_from_config(xml)


@pytest.mark.parametrize(
    "mapping",
    [
        {"0": "wall", "1": "floor"},
        {0: "wall", 1: "floor"},
        ["wall", "floor"],
        {"id2label": {"0": "wall", "1": "floor"}, "model_type": "mask2former"},
    ],
)
def test_mapping_shapes_pin_ids_and_append_background(mapping: object) -> None:
    labels = labelset_from_mapping(mapping)  # type: ignore[arg-type]
    assert labels.id2label == {0: "wall", 1: "floor", 2: "background"}
    assert labels.background_id == 2
    assert (labels.image_name, labels.image_value) == (None, None)


def test_mapping_keeps_gaps_and_an_existing_background() -> None:
    labels = labelset_from_mapping({"5": "sky", "0": "background", "2": "tree"})
    assert labels.background_id == 0
    assert labels.labels == ["background", "tree", "sky"]
    assert labelset_from_mapping({"3": "a", "7": "b"}).background_id == 8


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"-1": "wall"}, r"id '-1' is not a non-negative integer"),
        ({"one": "wall"}, r"id 'one' is not a non-negative integer"),
        ({"0": "wall", 0: "floor"}, r"id 0 appears twice"),
        ({"0": "wall", "1": "wall"}, r"label 'wall' has two ids \(0 and 1\)"),
        ({"0": ""}, r"id '0' has no label name"),
        ({"0": 3}, r"id '0' has no label name"),
        ({}, r"the mapping is empty"),
        ("wall", r"must be a JSON object"),
    ],
)
def test_bad_mappings(mapping: object, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message):
        labelset_from_mapping(mapping)  # type: ignore[arg-type]


def test_labels_sorted_deduplicated_background_last() -> None:
    labels = labelset_from_labels(["tomato", "leaf", "stem", "leaf", "Background"])
    assert labels.id2label == {0: "leaf", 1: "stem", 2: "tomato", 3: "background"}
    assert labelset_from_labels([]).id2label == {0: "background"}


def test_load_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "id2label.json"
    path.write_text(json.dumps({"0": "wall", "1": "building"}), encoding="utf-8")
    assert load_mapping_file(path).labels == ["wall", "building", "background"]


def test_mapping_file_with_duplicate_json_keys(tmp_path: Path) -> None:
    path = tmp_path / "id2label.json"
    path.write_text('{"0": "wall", "1": "sky", "0": "floor"}', encoding="utf-8")
    with pytest.raises(LabelConfigError, match=r"id2label\.json.*'0' appear twice"):
        load_mapping_file(path)


def test_mapping_file_bad_json_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "id2label.json"
    path.write_text('{\n  "0": "wall",\n}', encoding="utf-8")
    with pytest.raises(LabelConfigError, match="not valid JSON at line 3"):
        load_mapping_file(path)
    with pytest.raises(LabelConfigError, match="cannot read id2label file"):
        load_mapping_file(tmp_path / "missing.json")


def test_labelset_checks_itself() -> None:
    with pytest.raises(LabelConfigError, match="background id 5"):
        LabelSet({0: "a"}, 5)
    with pytest.raises(LabelConfigError, match="same label"):
        LabelSet({0: "a", 1: "a"}, 0)

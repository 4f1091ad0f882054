"""Every Label Studio file in ``shared/peers`` converts through ``ls-panoptic convert``.

These files were written by other people (Label Studio's SDK test data and editor examples, an
ML backend's outputs, a hosted Label Studio): the converter must take each task that has a
usable annotation, and fail only the truly wrong ones, with a message that names the fix.
Each case runs the CLI as a user would and checks the output contract on every entry; the
pixels are checked against references computed here by other means (Pillow's polygon fill,
label-studio-sdk's RLE decoder), never against numbers the converter produced before.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from cli.main import cli

SDK = "HumanSignal__label-studio-sdk/tests/custom/converter/data"
EDITOR = "HumanSignal__label-studio-frontend/examples"
EDITOR_IMAGES = "HumanSignal__label-studio-frontend/images"
DAGSHUB = "DagsHub__design-system/src/stories/dagshub/data-engine/Annotation"
ML = "HumanSignal__label-studio-ml-backend/label_studio_ml/examples/yolo/tests"
NICK = "nick-owuor-astro-nic-visuals-wDifg5xc9Z4-unsplash.jpg"


@dataclass(frozen=True)
class Case:
    """One peer file, how a user would convert it, and what must come out."""

    export: str
    config: str | None = None
    images: bool = False  # --images with the editor examples' image folder
    predictions: bool = False
    written: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (height, width)
    failures: tuple[str, ...] = ()  # one regex per failed task
    ignored: dict[str, int] = field(default_factory=dict)


CASES = {
    "sdk yolo: two annotations on one task": Case(
        f"{SDK}/test_export_yolo/data.json",
        f"{SDK}/test_export_yolo/label_config.xml",
        written={"image1": (2800, 2800), "image2": (2800, 2800)},
    ),
    "sdk yolo obb: 25 rotated boxes, labels in two letter cases": Case(
        f"{SDK}/test_export_yolo/data_obb.json",
        written={"image1": (768, 597), "image2": (768, 433), "image3": (768, 716)},
    ),
    "sdk yolo obb with its config: 'Butterfly' is not 'butterfly'": Case(
        f"{SDK}/test_export_yolo/data_obb.json",
        f"{SDK}/test_export_yolo/label_config_obb.xml",
        written={"image3": (768, 716)},
        failures=(r"task 10959: .*'Butterfly'.*letter case", r"task 10960: .*letter case"),
    ),
    "sdk yolo keypoints: relations and keypoints beside a box": Case(
        f"{SDK}/test_export_yolo/data_keypoints.json",
        f"{SDK}/test_export_yolo/label_config_keypoints.xml",
        written={"image1.jpg": (174, 216)},
        ignored={"keypointlabels": 3, "relation": 5},
    ),
    "sdk yolo polygons": Case(
        f"{SDK}/test_export_yolo/data_polygons.json",
        f"{SDK}/test_export_yolo/label_config_polygons.xml",
        written={"image2": (426, 640)},
    ),
    "sdk coco: a 3-point polygon and keypoints": Case(
        f"{SDK}/test_export_coco/data.json",
        f"{SDK}/test_export_coco/label_config.xml",
        written={"test_image1.jpg": (320, 500)},
        ignored={"keypointlabels": 2},
    ),
    "sdk json_min input: an uploaded image": Case(
        f"{SDK}/test_export_json_min/data.json",
        f"{SDK}/test_export_json_min/label_config.xml",
        written={"example.png": (128, 128)},
    ),
    "sdk repeater: a multi-image task": Case(
        f"{SDK}/test_export_json_min/data_repeater.json",
        failures=(r"task 86: task data 'images' is a list of \d+ images \(a multi-image task\)",),
    ),
    "sdk csv: predictions as objects, a box past the right edge": Case(
        f"{SDK}/test_export_csv/csv_test.json",
        written={"0030019819f25b28.jpg": (576, 768), "00155094b7acc33b.jpg": (510, 768)},
    ),
    "editor brush without size, no image given": Case(
        f"{EDITOR}/image_segmentation/annotations/1.json",
        f"{EDITOR}/image_segmentation/config.xml",
        failures=(r"task 1: region lOA7F7sUZJ: has no original_width.*--images",),
    ),
    "editor brush without size, size from the image": Case(
        f"{EDITOR}/image_segmentation/annotations/1.json",
        f"{EDITOR}/image_segmentation/config.xml",
        images=True,
        written={NICK: (2802, 2242)},
    ),
    "editor magic wand: tool + labels with RLE on both": Case(
        f"{EDITOR}/image_magic_wand/annotations/1.json",
        f"{EDITOR}/image_magic_wand/config.xml",
        written={
            "magic_wand_scale_1_20200902_015806_26_2235_1B_AnalyticMS_00750_00750.jpg": (
                2860,
                3000,
            )
        },
    ),
    "editor tools: an annotation file without task data": Case(
        f"{EDITOR}/image_tools/annotations/1.json",
        f"{EDITOR}/image_tools/config.xml",
        failures=(r"task 1: .*no 'data' object",),
    ),
    "editor ellipse without size beside a choice, size from the image": Case(
        f"{EDITOR}/image_ellipses/annotations/1.json",
        f"{EDITOR}/image_ellipses/config.xml",
        images=True,
        written={NICK: (2802, 2242)},
        ignored={"choices": 1},
    ),
    "editor tasks with a prediction (no size), only one image at hand": Case(
        f"{EDITOR}/image_ellipses/tasks.json",
        f"{EDITOR}/image_ellipses/config.xml",
        images=True,
        predictions=True,
        written={NICK: (2802, 2242)},
    ),
    "editor polygon without size and without its image": Case(
        f"{EDITOR}/image_polygons/annotations/0.json",
        f"{EDITOR}/image_polygons/config.xml",
        failures=(r"task 0: region XSMXwwsaTa: .*--images",),
    ),
    "editor 200 boxes and 2 predicted ones": Case(
        f"{EDITOR}/image_bbox_large/annotations/1.json",
        f"{EDITOR}/image_bbox_large/config.xml",
        images=True,
        written={NICK: (2802, 2242)},
    ),
    "dagshub polygons: one without size takes its sibling's": Case(
        f"{DAGSHUB}/PolygonTasks.ts.json",
        written={"spacexmoon-800x501.jpg": (457, 640), "000000000072.jpg": (640, 427)},
    ),
    "dagshub boxes that disagree on the image size": Case(
        f"{DAGSHUB}/BboxTasks.ts.json",
        failures=(r"disagree on the image size.*640x480 \(region TKHJrxtPow\)",),
    ),
    "dagshub keypoints only: an all-background entry": Case(
        f"{DAGSHUB}/KeypointsTasks.ts.json",
        written={"000000001296.jpg": (640, 427)},
        ignored={"keypointlabels": 15},
    ),
    "dagshub 219 ellipses": Case(
        f"{DAGSHUB}/EllipseTasks.ts.json", written={"000000000009.jpg": (480, 640)}
    ),
}


def convert(peers: Path, case: Case, out: Path, export: Path | None = None) -> Any:
    """Run ``ls-panoptic convert`` on a case; returns (result, snapshot, sidecar)."""
    args = ["convert", str(export or peers / case.export), "--output", str(out), "--quiet"]
    if case.config:
        args += ["--label-config", str(peers / case.config)]
    if case.images:
        args += ["--images", str(peers / EDITOR_IMAGES)]
    if case.predictions:
        args.append("--predictions")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1), result.output
    with out.open("rb") as file:
        snapshot = pickle.load(file)
    sidecar = json.loads(out.with_suffix(".meta.json").read_text())
    return result, snapshot, sidecar


def assert_contract(entry: dict[str, Any], sidecar: dict[str, Any], shape: tuple[int, int]) -> None:
    """The output contract of DESIGN 1 on one entry."""
    mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
    assert set(entry) == {"panoptic_mask", "inst2class"}
    assert mask.dtype == np.uint32 and mask.shape == shape and mask.flags.c_contiguous
    assert sorted(inst2class) == list(range(1, len(inst2class) + 1))
    assert set(np.unique(mask).tolist()) == set(inst2class)
    assert all(type(k) is int and type(v) is int for k, v in inst2class.items())
    assert {str(v) for v in inst2class.values()} <= set(sidecar["id2label"])


@pytest.mark.parametrize("name", list(CASES))
def test_every_peer_export_converts_or_fails_with_its_reason(
    peers: Path, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    result, snapshot, sidecar = convert(peers, case, tmp_path / "gt.pkl")
    assert {k: v["panoptic_mask"].shape for k, v in snapshot.items()} == case.written
    for key, shape in case.written.items():
        assert_contract(snapshot[key], sidecar, shape)
    messages = [f["message"] for f in sidecar["failures"]]
    assert len(messages) == len(case.failures), messages
    printed = result.output.splitlines()
    for pattern, message in zip(case.failures, messages, strict=True):
        # the line the CLI prints: the sidecar's message, then what to do about it
        (line,) = [line for line in printed if line.startswith(f"error: {message}")]
        assert re.search(pattern, line), line
    assert result.exit_code == (1 if case.failures else 0)
    ignored: dict[str, int] = {}
    for meta in sidecar["entries"].values():
        for kind, count in meta["ignored"].items():
            ignored[kind] = ignored.get(kind, 0) + count
    assert ignored == case.ignored


def _class_of(sidecar: dict[str, Any], label: str) -> int:
    return next(int(k) for k, v in sidecar["id2label"].items() if v == label)


def _polygon_reference(corners: list[tuple[float, float]], shape: tuple[int, int]) -> Any:
    """Pillow's fill of a polygon (pixel corners at integers: shift by -0.5 for centres)."""
    canvas = Image.new("1", (shape[1], shape[0]))
    ImageDraw.Draw(canvas).polygon([(x - 0.5, y - 0.5) for x, y in corners], fill=1)
    return np.asarray(canvas, dtype=bool)


def _grow(mask: Any) -> Any:
    """``mask`` and its 8 neighbours (a 3x3 dilation)."""
    padded = np.pad(mask, 1)
    rows, cols = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + rows, dx : dx + cols]
    return out


def assert_same_up_to_the_edge(got: Any, want: Any, outline: Any) -> None:
    """``got`` and ``want`` differ at most within 2 pixels of ``outline``'s boundary: the two
    fills place edge pixels by different rules (centre test here, Pillow's scan conversion,
    which takes up to 2 pixels more beside a steep edge). A wrong pivot or direction of
    rotation moves whole sides by far more."""
    edge = _grow(_grow(outline)) & _grow(_grow(~outline))
    assert not ((got ^ want) & ~edge).any()
    assert (got & want).sum() > 0.8 * want.sum()


def test_rotated_boxes_cover_their_rotated_corners(peers: Path, tmp_path: Path) -> None:
    """Rotation is about the top-left corner, clockwise on screen (DESIGN 3.1): each box's
    pixels match Pillow's fill of the corners computed here, wherever no later box covers it."""
    _result, snapshot, sidecar = convert(
        peers,
        CASES["sdk yolo obb: 25 rotated boxes, labels in two letter cases"],
        tmp_path / "o.pkl",
    )
    tasks = json.loads((peers / f"{SDK}/test_export_yolo/data_obb.json").read_text())
    checked = 0
    for task in tasks:
        entry = snapshot[task["data"]["image"].rsplit("/", 1)[-1]]
        mask = entry["panoptic_mask"]
        result = task["annotations"][0]["result"]
        for order, item in enumerate(result):
            reference = _box_reference(item, mask.shape)
            later = np.zeros_like(reference)
            for other in result[order + 1 :]:
                later |= _box_reference(other, mask.shape)
            visible = reference & ~later
            if visible.sum() < 50:
                continue
            instance = np.bincount(mask[visible]).argmax()
            assert_same_up_to_the_edge(mask == instance, visible, visible)
            label = item["value"]["rectanglelabels"][0]
            assert entry["inst2class"][int(instance)] == _class_of(sidecar, label)
            checked += 1
    assert checked >= 20


def _box_reference(item: dict[str, Any], shape: tuple[int, int]) -> Any:
    v, w, h = item["value"], item["original_width"], item["original_height"]
    angle = math.radians(v["rotation"])
    cos, sin = math.cos(angle), math.sin(angle)
    x0, y0, bw, bh = v["x"] * w / 100, v["y"] * h / 100, v["width"] * w / 100, v["height"] * h / 100
    offsets = [(0, 0), (bw, 0), (bw, bh), (0, bh)]
    return _polygon_reference(
        [(x0 + dx * cos - dy * sin, y0 + dx * sin + dy * cos) for dx, dy in offsets], shape
    )


def test_soft_brush_without_size_is_thresholded_at_the_image_size(
    peers: Path, tmp_path: Path
) -> None:
    """The editor example's anti-aliased stroke: 253,348 pixels have alpha >= 128 (counted
    when the peers folder was assembled), and the mask is that stroke on the image's grid."""
    case = CASES["editor brush without size, size from the image"]
    _result, snapshot, sidecar = convert(peers, case, tmp_path / "o.pkl")
    entry = snapshot[NICK]
    planet = _class_of(sidecar, "Planet")
    things = [i for i, c in entry["inst2class"].items() if c == planet]
    assert len(things) == 1
    assert int((entry["panoptic_mask"] == things[0]).sum()) == 253_348


def _wrapped_predictions(peers: Path, tmp_path: Path, name: str) -> Path:
    """An ML backend's ``/predict`` output as Label Studio stores it: a task's predictions."""
    predictions = json.loads((peers / f"{ML}/{name}").read_text())
    task = {
        "id": 1,
        "data": {
            "image": "https://s3.amazonaws.com/htx-pub/datasets/mmdetection-ml-test/001bebecea382500.jpg"
        },
        "predictions": predictions,
    }
    path = tmp_path / "task.json"
    path.write_text(json.dumps([task]))
    return path


def test_ml_backend_predictions_alone_are_refused_naming_the_fix(peers: Path) -> None:
    result = CliRunner().invoke(
        cli, ["convert", str(peers / f"{ML}/test_brush_labels.json"), "-o", "x.pkl", "-q"]
    )
    assert result.exit_code == 2
    assert "predictions (model_version, score, result) without their tasks" in result.output


def test_ml_backend_brush_predictions_match_the_sdk_decoder(peers: Path, tmp_path: Path) -> None:
    from label_studio_sdk.converter.brush import decode_rle

    export = _wrapped_predictions(peers, tmp_path, "test_brush_labels.json")
    case = Case(str(export), predictions=True)
    _result, snapshot, sidecar = convert(peers, case, tmp_path / "o.pkl", export)
    mask = snapshot["001bebecea382500.jpg"]["panoptic_mask"]
    assert mask.shape == (576, 768)
    union = np.zeros(mask.shape, dtype=bool)
    for item in json.loads(export.read_text())[0]["predictions"][0]["result"]:
        alpha = np.reshape(decode_rle(item["value"]["rle"]), (576, 768, 4))[:, :, 3]
        union |= alpha >= 128
    background = _class_of(sidecar, "background")
    inst2class = snapshot["001bebecea382500.jpg"]["inst2class"]
    covered = np.isin(mask, [i for i, c in inst2class.items() if c != background])
    assert np.array_equal(covered, union) and union.any()


def test_ml_backend_polygons_without_ids_or_size_take_the_image_size(
    peers: Path, tmp_path: Path
) -> None:
    export = _wrapped_predictions(peers, tmp_path, "test_polygon_labels.json")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (768, 576)).save(images / "001bebecea382500.jpg")
    out = tmp_path / "o.pkl"
    args = ["convert", str(export), "-o", str(out), "--predictions", "-q"]
    without = CliRunner().invoke(cli, args)
    assert without.exit_code == 1 and "--images" in without.output
    assert CliRunner().invoke(cli, [*args, "--images", str(images)]).exit_code == 0
    with out.open("rb") as file:
        entry = pickle.load(file)["001bebecea382500.jpg"]
    result = json.loads(export.read_text())[0]["predictions"][0]["result"]
    assert len(entry["inst2class"]) == len(result) + 1  # three people and the background
    for item in result:  # the polygons do not overlap: each is its own instance
        corners = [(x * 768 / 100, y * 576 / 100) for x, y in item["value"]["points"]]
        reference = _polygon_reference(corners, (576, 768))
        instance = np.bincount(entry["panoptic_mask"][reference]).argmax()
        assert_same_up_to_the_edge(entry["panoptic_mask"] == instance, reference, reference)

"""Label Studio data as found in the field (DESIGN 3.8), made by a real Label Studio 1.23.2.

One project (:mod:`tests.e2e.field_project`) holds a task per kind; it is exported, converted in
batch, and synced live (the worker in-process, as in ``test_live_sync.py``).

What Label Studio 1.23.2 really produces (asserted by the ``test_label_studio_*`` tests below, so
that an upgrade that changes it fails here first):

- Predictions. ``POST /api/projects/<id>/import`` takes ``[{"data": ..., "predictions":
  [{"result", "model_version", "score"}]}]`` (its report counts ``prediction_count``). It checks
  predictions against the label config but only logs those that fail ("Prediction validation
  failed, not raising error") and stores them all. The plain export (``GET
  /api/projects/<id>/export?exportType=JSON``, what the UI's Export dialog calls) lists a task's
  predictions as bare ids, ``"predictions": [5, 6]`` (``[]`` without any). An annotation made
  through the API carries ``"prediction"``: a copy of the task's prediction of the project's
  ``model_version`` (which the import sets), else ``{}``. JSON_MIN has no predictions at all: a
  task with only predictions is a row with ``annotation_id: null``. An export snapshot (``POST
  /api/projects/<id>/exports/``) lists ids too, unless asked for objects with
  ``serialization_options: {"predictions": {"only_id": false}}``: then ``{"id", "result",
  "model_version", "score", "created_at", "updated_at", "task", "project", ...}``. The SDK's
  ``tasks.get`` always gives prediction objects (and ``completed_by`` as a user object).
- Results without ``original_width``/``original_height``: ``POST /api/tasks/<id>/annotations/``
  accepts them and stores them unchanged, brush RLE included; both exports give them back
  without the keys. Other JSON_MIN region values carry ``original_width``/``original_height``
  (``image_rotation`` is dropped from JSON_MIN).
- A tool with a separate ``<Labels>`` (``<Rectangle name="box">`` ... + ``<Labels
  name="label">``): the API takes what the editor saves, two items sharing the region ``id``, the
  tool's (``type`` ``rectangle``, geometry only) and the labels' (``type`` ``labels``, the same
  geometry plus ``labels``). JSON keeps both. JSON_MIN has one key per control and no ``id`` or
  ``type``: ``"box": [{x, y, width, height, rotation, original_width, original_height}]`` and
  ``"label": [...]``, ONE list under the ``<Labels>`` name holding every region of every tool in
  result order, each with its geometry and ``labels``. So each region appears twice in a row,
  and only equal geometry tells which entries are one region. Ellipses, polygons (``points``,
  ``closed``) and brushes (``format``, ``rle``) alike.
- ``<KeyPoint>`` + ``<Labels>``: JSON ``{"type": "keypoint", "value": {x, y, width}}`` plus
  ``{"type": "labels", "value": {x, y, width, labels}}``; JSON_MIN ``"point": [{x, y, width}]``
  and a ``{x, y, width, labels}`` entry in the ``"label"`` list.
- ``rectanglelabels`` with four corner ``points`` and ``closed`` (no x/y/width/height): accepted
  as an annotation (API, silently) and as a prediction (the import logs it as invalid: "expected
  fields: x, y, width, height, rotation, rectanglelabels"), and exported unchanged.
- No area: a single choice becomes a bare string in JSON_MIN (``"quality": "good"``), losing its
  ``original_width``/``original_height``; a keypoint-only annotation keeps them; an empty result
  is a row with its ``annotation_id`` and no control key.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pytest
import redis
from click.testing import CliRunner
from label_studio_sdk.client import LabelStudio as SDK

from cli.convert import run_convert
from cli.main import cli
from cli.report import failure_line
from devstack.labelstudio import LabelStudioServer
from ls_panoptic.batch import BatchReport
from ls_panoptic.model import ConvertOptions
from worker import runtime
from worker.settings import Settings

from ._sync_helpers import LiveProject, service_settings
from .field_pixels import (
    assert_background_only,
    assert_region,
    box_zones,
    convex_zones,
    ellipse_zones,
    stroke_zones,
)
from .field_project import FieldProject, build_field_project
from .field_results import (
    ANNOTATED_TRIANGLE,
    BLOB,
    KEYPOINT_AT,
    KEYPOINT_BOX,
    ORIENTED_BOX,
    ORIENTED_PRED,
    QUAD,
    SIZE_BOX,
    TOOL_BLOB,
    TOOL_BOX,
    TOOL_OVAL,
    TOOL_TRIANGLE,
    TRIANGLE,
    blob_alpha,
)
from .lsclient import LabelStudioClient
from .reference import image_key

pytestmark = pytest.mark.e2e

Entry = dict[str, Any]
Record = dict[str, Any]

#: tasks with an annotation: what every conversion of the project writes, with the images
ANNOTATED = {
    "pred_annotated.png", "size_keypoint.png", "size_region.png", "size_image.png",
    "tool_labels.png", "keypoint_labels.png", "oriented_box.png", "choices_only.png",
    "keypoint_only.png", "empty_result.png",
}  # fmt: skip
PREDICTED_ONLY = {"pred_only.png", "oriented_pred.png"}
#: only the image gives these a size
NEEDS_IMAGE = {"size_image.png", "empty_result.png"}
PREDICTION_IDS = {"pred_annotated.png": 2, "pred_only.png": 1, "oriented_pred.png": 1}
#: an export snapshot's option that lists predictions as objects, not ids
AS_OBJECTS = {"predictions": {"only_id": False}}


@dataclass(frozen=True)
class Converted:
    """One batch conversion: what ``convert`` reports, writes and describes."""

    report: BatchReport
    raw: bytes
    snapshot: dict[str, Entry]
    sidecar: dict[str, Any]

    def failure(self, task_id: int) -> str:
        """The line ``convert`` prints for the task: the sidecar's message, then what to do."""
        lines = [failure_line(f) for f in self.report.failures if f.task_id == task_id]
        assert lines, f"task {task_id} did not fail: {self.report.failures}"
        return lines[0]


class Convert(Protocol):
    """The ``convert`` fixture: one export (``JSON``, ``JSON_MIN`` or ``OBJECTS``) converted,
    with or without ``--images`` and ``--predictions``."""

    def __call__(self, kind: str, *, images: bool, predictions: bool = False) -> Converted: ...


@pytest.fixture(scope="module")
def field(ls_client: LabelStudioClient, tmp_path_factory: pytest.TempPathFactory) -> FieldProject:
    return build_field_project(ls_client, tmp_path_factory.mktemp("field"))


@pytest.fixture(scope="module")
def exports(field: FieldProject, ls_client: LabelStudioClient) -> dict[str, bytes]:
    """The plain JSON and JSON_MIN exports, and an export snapshot with prediction objects."""
    made = {kind: ls_client.export(field.project_id, kind) for kind in ("JSON", "JSON_MIN")}
    made["OBJECTS"] = ls_client.export_snapshot(field.project_id, "JSON", AS_OBJECTS)
    return made


@pytest.fixture(scope="module")
def convert(
    field: FieldProject, exports: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory
) -> Convert:
    done: dict[tuple[str, bool, bool], Converted] = {}

    def run(kind: str, *, images: bool, predictions: bool = False) -> Converted:
        if (kind, images, predictions) not in done:  # each made once, for every test
            folder = tmp_path_factory.mktemp(f"{kind}-{images}-{predictions}")
            options = ConvertOptions(use_predictions=predictions)
            done[kind, images, predictions] = _convert(
                exports[kind], folder, field.images_dir if images else None, field, options
            )
        return done[kind, images, predictions]

    return run


def _convert(
    export: bytes, folder: Path, images: Path | None, field: FieldProject, options: ConvertOptions
) -> Converted:
    source, output = folder / "export.json", folder / "snapshot.pkl"
    source.write_bytes(export)
    report, _labels = run_convert(
        str(source), output, images, field.label_config_path, None, options,
        strict=False, show_progress=False,
    )  # fmt: skip
    raw = output.read_bytes()
    sidecar = json.loads((folder / "snapshot.meta.json").read_text())
    return Converted(report, raw, pickle.loads(raw), sidecar)


def tasks_by_name(export: bytes) -> dict[str, Record]:
    """A JSON export's tasks by image name."""
    return {image_key(task["data"]["image"]): task for task in json.loads(export)}


def rows_by_name(export: bytes) -> dict[str, Record]:
    """A JSON_MIN export's rows by image name (no task here has two annotations)."""
    return {image_key(row["image"]): row for row in json.loads(export)}


def _no_size(value: Record) -> Record:
    return {k: v for k, v in value.items() if k not in ("original_width", "original_height")}


# --- what Label Studio produces


def test_label_studio_lists_predictions_by_id(
    field: FieldProject, exports: dict[str, bytes]
) -> None:
    plain = tasks_by_name(exports["JSON"])
    ids = {name: task["predictions"] for name, task in plain.items()}
    assert {name: len(listed) for name, listed in ids.items() if listed} == PREDICTION_IDS
    assert all(type(i) is int for listed in ids.values() for i in listed)
    copied = plain["pred_annotated.png"]["annotations"][0]["prediction"]
    assert copied["result"] in field.tasks["pred_annotated.png"].predictions  # an object
    (box,) = tasks_by_name(exports["OBJECTS"])["oriented_pred.png"]["predictions"]
    assert (box["id"], box["model_version"]) == (ids["oriented_pred.png"][0], "m0")
    assert box["result"] == field.tasks["oriented_pred.png"].predictions[0]
    row = rows_by_name(exports["JSON_MIN"])["pred_only.png"]
    assert row["annotation_id"] is None and not any("predict" in key for key in row)


def test_label_studio_sdk_gives_prediction_objects(
    label_studio: LabelStudioServer, field: FieldProject
) -> None:
    with httpx.Client(timeout=60) as http:
        sdk = SDK(  # type: ignore[no-untyped-call]
            base_url=label_studio.url, api_key=label_studio.token, httpx_client=http
        )
        task = sdk.tasks.get(id=str(field.task_ids["pred_annotated.png"])).model_dump()
    results = [prediction["result"] for prediction in task["predictions"]]
    assert results == field.tasks["pred_annotated.png"].predictions
    assert isinstance(task["annotations"][0]["completed_by"], dict)


def test_label_studio_keeps_results_as_sent(
    label_studio: LabelStudioServer, field: FieldProject, exports: dict[str, bytes]
) -> None:
    """No size added to API-made regions, a rectangle's corner points kept: what was sent."""
    logged = label_studio.log_path.read_text(errors="replace")
    assert "Invalid value for control 'rect'" in logged  # the oriented box prediction, kept
    plain = tasks_by_name(exports["JSON"])
    for name, task in field.tasks.items():
        stored = [annotation["result"] for annotation in plain[name]["annotations"]]
        assert stored == ([] if task.annotation is None else [task.annotation]), name
    rows = rows_by_name(exports["JSON_MIN"])
    assert "original_width" not in rows["size_image.png"]["polygon"][0]
    assert rows["size_keypoint.png"]["keypoint"][0]["original_width"] == 200
    oriented = rows["oriented_box.png"]["rect"][0]
    assert set(_no_size(oriented)) == {"points", "closed", "rectanglelabels"}


def test_label_studio_json_min_repeats_tool_regions_under_labels(
    exports: dict[str, bytes],
) -> None:
    row = rows_by_name(exports["JSON_MIN"])["tool_labels.png"]
    tools = ("box", "oval", "outline", "paint")
    assert all(len(row[tool]) == 1 for tool in tools) and len(row["label"]) == 4
    assert not any({"id", "type"} & set(v) for name in (*tools, "label") for v in row[name])
    geometry = [_no_size(row[tool][0]) for tool in tools]
    labels = ["leaf", "stem", "tomato", "leaf"]
    expected = [g | {"labels": [label]} for g, label in zip(geometry, labels, strict=True)]
    assert [_no_size(entry) for entry in row["label"]] == expected  # in result order
    assert all(v["original_width"] == 192 for name in (*tools, "label") for v in row[name])
    points = rows_by_name(exports["JSON_MIN"])["keypoint_labels.png"]
    at = {"x": KEYPOINT_AT[0] * 100, "y": KEYPOINT_AT[1] * 100, "width": 0.8}
    assert [_no_size(v) for v in points["point"]] == [at]
    point, box = points["label"]  # the keypoint's labels entry, then the box's
    assert _no_size(point) == at | {"labels": ["leaf"]} and box["labels"] == ["stem"]


def test_label_studio_json_min_of_annotations_without_area(exports: dict[str, bytes]) -> None:
    rows = rows_by_name(exports["JSON_MIN"])
    assert rows["choices_only.png"]["quality"] == "good"  # a bare string: its size is lost
    assert rows["keypoint_only.png"]["keypoint"][0]["original_height"] == 84
    empty = rows["empty_result.png"]
    assert empty["annotation_id"] is not None
    assert set(empty) == {"image", "id", "annotator", "annotation_id", "created_at",
                          "updated_at", "lead_time"}  # fmt: skip


# --- batch: what the converter makes of it


def test_prediction_ids_are_ignored_and_counted(
    convert: Convert, field: FieldProject, exports: dict[str, bytes], tmp_path: Path
) -> None:
    done = convert("JSON", images=True)
    assert set(done.snapshot) == ANNOTATED and not done.report.failures
    assert done.report.prediction_ids == sum(PREDICTION_IDS.values())
    entry, name = done.snapshot["pred_annotated.png"], "pred_annotated.png"
    assert_region(entry, "tomato", convex_zones(ANNOTATED_TRIANGLE, field.shape(name)))
    assert sorted(entry["inst2class"].values()) == [2, 3]  # the predicted leaf and stem: unused
    assert done.sidecar["entries"][name]["is_prediction"] is False
    printed = _cli_convert(exports["JSON"], field, tmp_path)
    count = str(sum(PREDICTION_IDS.values()))
    assert any("prediction" in line and count in line for line in printed), printed


def _cli_convert(export: bytes, field: FieldProject, folder: Path) -> list[str]:
    """``ls-panoptic convert EXPORT --images ... --label-config ...``: its output lines."""
    (folder / "export.json").write_bytes(export)
    args = ["convert", str(folder / "export.json"), "--images", str(field.images_dir),
            "--output", str(folder / "out.pkl"), "--label-config", str(field.label_config_path),
            "--quiet"]  # fmt: skip
    outcome = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output.splitlines()


def test_prediction_ids_leave_nothing_to_use(convert: Convert) -> None:
    """The plain export has only ids: ``--predictions`` finds nothing more to convert."""
    done = convert("JSON", images=True, predictions=True)
    assert set(done.snapshot) == ANNOTATED and not done.report.failures
    assert done.report.prediction_ids == sum(PREDICTION_IDS.values())
    assert done.raw == convert("JSON", images=True).raw


def test_prediction_objects_convert_with_use_predictions(
    convert: Convert, field: FieldProject
) -> None:
    assert convert("OBJECTS", images=True).raw == convert("JSON", images=True).raw
    done = convert("OBJECTS", images=True, predictions=True)
    assert set(done.snapshot) == ANNOTATED | PREDICTED_ONLY and not done.report.failures
    assert done.report.prediction_ids == 0
    only = done.snapshot["pred_only.png"]
    assert_region(only, "stem", convex_zones(QUAD, field.shape("pred_only.png")))
    oriented = done.snapshot["oriented_pred.png"]
    assert_region(oriented, "leaf", convex_zones(ORIENTED_PRED, field.shape("oriented_pred.png")))
    assert len(only["inst2class"]) == len(oriented["inst2class"]) == 2
    entries = done.sidecar["entries"]
    assert entries["pred_only.png"]["is_prediction"] is True
    assert entries["pred_annotated.png"]["is_prediction"] is False


def assert_size_regions(entry: Entry, field: FieldProject, name: str) -> None:
    """The size tasks' triangle (leaf) and brush stroke (stem), drawn at the image's size."""
    shape = field.shape(name)
    mask = entry["panoptic_mask"]
    assert mask.shape == shape and mask.dtype == np.uint32, (name, mask.shape)
    assert_region(entry, "leaf", convex_zones(TRIANGLE, shape))
    assert_region(entry, "stem", stroke_zones(blob_alpha(shape[1], shape[0], BLOB)))


def test_size_from_another_result_of_the_annotation(convert: Convert, field: FieldProject) -> None:
    without, done = convert("JSON", images=False), convert("JSON", images=True)
    for name in ("size_keypoint.png", "size_region.png"):
        assert_size_regions(without.snapshot[name], field, name)
        mask = without.snapshot[name]["panoptic_mask"]
        assert mask.tobytes() == done.snapshot[name]["panoptic_mask"].tobytes(), name
    sizer = without.snapshot["size_region.png"]
    assert_region(sizer, "tomato", box_zones(SIZE_BOX, field.shape("size_region.png")))
    assert without.sidecar["entries"]["size_keypoint.png"]["ignored"] == {"keypointlabels": 1}


def test_size_only_the_image_gives(convert: Convert, field: FieldProject) -> None:
    without = convert("JSON", images=False)
    assert set(without.snapshot) == ANNOTATED - NEEDS_IMAGE
    for name in NEEDS_IMAGE:
        message = without.failure(field.task_ids[name])
        assert "--images" in message and f"task {field.task_ids[name]}" in message, message
    done = convert("JSON", images=True)
    assert_size_regions(done.snapshot["size_image.png"], field, "size_image.png")


def test_json_min_converts_like_json(convert: Convert) -> None:
    """Ids and order included: JSON_MIN's repeated tool regions are one region each."""
    json_done, min_done = convert("JSON", images=True), convert("JSON_MIN", images=True)
    assert not min_done.report.failures
    assert set(min_done.snapshot) == set(json_done.snapshot) == ANNOTATED
    for name, entry in json_done.snapshot.items():
        other = min_done.snapshot[name]
        assert other["panoptic_mask"].tobytes() == entry["panoptic_mask"].tobytes(), name
        assert other["inst2class"] == entry["inst2class"], name


@pytest.mark.parametrize("kind", ["JSON", "JSON_MIN"])
def test_tool_regions_with_separate_labels(
    convert: Convert, field: FieldProject, kind: str
) -> None:
    done = convert(kind, images=True)
    entry, shape = done.snapshot["tool_labels.png"], field.shape("tool_labels.png")
    assert_region(entry, "leaf", box_zones(TOOL_BOX, shape))
    assert_region(entry, "stem", ellipse_zones(TOOL_OVAL, shape))
    assert_region(entry, "tomato", convex_zones(TOOL_TRIANGLE, shape))
    assert_region(entry, "leaf", stroke_zones(blob_alpha(shape[1], shape[0], TOOL_BLOB)))
    assert len(entry["inst2class"]) == 5  # four regions, each once, and the background
    meta = done.sidecar["entries"]["tool_labels.png"]
    assert meta["regions"] == {"rectangle": 1, "ellipse": 1, "polygon": 1, "brush": 1}
    assert meta["ignored"] == {}


@pytest.mark.parametrize("kind", ["JSON", "JSON_MIN"])
def test_keypoint_with_labels_is_ignored_and_counted(
    convert: Convert, field: FieldProject, kind: str
) -> None:
    done = convert(kind, images=True)
    entry = done.snapshot["keypoint_labels.png"]
    assert_region(entry, "stem", box_zones(KEYPOINT_BOX, field.shape("keypoint_labels.png")))
    assert sorted(entry["inst2class"].values()) == [1, 3]  # no leaf: the keypoint paints nothing
    meta = done.sidecar["entries"]["keypoint_labels.png"]
    assert meta["ignored"] == {"keypoint": 1} and meta["regions"] == {"rectangle": 1}


def test_rectangle_given_as_corner_points_is_that_polygon(
    convert: Convert, field: FieldProject
) -> None:
    entry = convert("JSON", images=False).snapshot["oriented_box.png"]
    shape = field.shape("oriented_box.png")
    inside, outside = convex_zones(ORIENTED_BOX, shape)
    cols = [x * shape[1] for x, _ in ORIENTED_BOX]
    rows = [y * shape[0] for _, y in ORIENTED_BOX]
    bounds = np.zeros(shape, bool)  # the axis-aligned box around the corners
    bounds[round(min(rows)) : round(max(rows)), round(min(cols)) : round(max(cols))] = True
    assert (bounds & outside).sum() > 3000  # its corners, outside the turned box: must stay empty
    assert_region(entry, "tomato", (inside, outside))
    assert len(entry["inst2class"]) == 2


def test_annotations_without_area_are_all_background(convert: Convert, field: FieldProject) -> None:
    without = convert("JSON", images=False)
    for name, ignored in (("choices_only.png", "choices"), ("keypoint_only.png", "keypointlabels")):
        assert_background_only(without.snapshot[name], field.shape(name))
        assert without.sidecar["entries"][name]["ignored"] == {ignored: 1}
    done = convert("JSON", images=True)
    for name in ("choices_only.png", "keypoint_only.png", "empty_result.png"):
        assert_background_only(done.snapshot[name], field.shape(name))


# --- live: the worker pulls the same tasks through the SDK


@contextmanager
def synced(
    field: FieldProject,
    server: LabelStudioServer,
    client: LabelStudioClient,
    connection: redis.Redis,
    settings: Settings,
    root: Path,
) -> Iterator[LiveProject]:
    """Every task of the project synced into the store by the in-process worker (no images
    folder: it downloads the images it needs from Label Studio)."""
    shutil.copytree(field.images_dir, root / "images")  # for the batch conversion only
    with runtime.running(settings, connection=connection) as rt:
        live = LiveProject(client, server, rt, field.project_id, root, dict(field.task_ids))
        rt.dispatcher.sync_tasks(field.project_id, field.task_ids.values())  # TASKS_CREATED
        live.run_jobs()
        yield live


def test_live_equals_batch(
    field: FieldProject,
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """The SDK gives prediction objects, left unused; sizes no result gives come from the
    downloaded image: the store holds what ``convert --images`` makes of the JSON export."""
    settings = service_settings(redis_url, label_studio)
    with synced(field, label_studio, ls_client, redis_client, settings, tmp_path) as live:
        live.assert_store_equals_batch("field", ANNOTATED)


def test_live_with_predictions_equals_batch_of_prediction_objects(
    field: FieldProject,
    exports: dict[str, bytes],
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """With predictions used, live equals the batch of an export listing them as objects (the
    plain export's ids cannot give them: ``test_prediction_ids_leave_nothing_to_use``)."""
    options = ConvertOptions(use_predictions=True)
    settings = service_settings(redis_url, label_studio, convert=options)
    with synced(field, label_studio, ls_client, redis_client, settings, tmp_path) as live:
        expected = ANNOTATED | PREDICTED_ONLY
        live.assert_store_equals_batch("predictions", expected, export_file=exports["OBJECTS"])

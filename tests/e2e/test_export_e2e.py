"""End to end: a real Label Studio 1.23.2 export, converted by ``ls-panoptic convert``, agrees
with an independent reference conversion (``reference.py``) on at least 99.5% of the pixels
of every image, in JSON and JSON_MIN alike."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle
from PIL import Image

from devstack.labelstudio import LS_VERSION, LabelStudioServer

from .build_project import LabelStudioExport
from .compare import Conversion, class_map, partition_agreement, run_cli_convert
from .reference import BACKGROUND, ReferenceImage, reference_conversion
from .scene import EXIF_JPEG, LABELS, SKIPPED_ONLY, UNLABELED

pytestmark = pytest.mark.e2e

MIN_AGREEMENT = 0.995
EXPECTED_ID2LABEL = {**dict(enumerate(LABELS)), len(LABELS): BACKGROUND}
AREA_TYPES = {"brushlabels", "bitmasklabels", "polygonlabels", "rectanglelabels", "ellipselabels"}


def _load(path: Path) -> list[dict[str, Any]]:
    export: list[dict[str, Any]] = json.loads(path.read_text())
    return export


@pytest.fixture(scope="module", params=["JSON", "JSON_MIN"])
def converted(
    request: pytest.FixtureRequest,
    ls_export: LabelStudioExport,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Conversion, dict[str, ReferenceImage]]:
    """The CLI's conversion of one export format, and the reference of the same file."""
    path = ls_export.json_path if request.param == "JSON" else ls_export.json_min_path
    conversion = run_cli_convert(path, ls_export, tmp_path_factory.mktemp(request.param))
    return conversion, reference_conversion(_load(path))


def test_server_is_the_pinned_release(label_studio: LabelStudioServer) -> None:
    version = httpx.get(f"{label_studio.url}/api/version/", timeout=10).json()
    assert version["release"] == LS_VERSION
    assert label_studio.process.poll() is None


def test_export_holds_every_region_kind(ls_export: LabelStudioExport) -> None:
    tasks = {task["id"]: task for task in _load(ls_export.json_path)}
    assert set(tasks) == set(ls_export.task_ids.values())  # download_all_tasks: all five
    kinds = {
        item["type"] for task in tasks.values() for a in task["annotations"] for item in a["result"]
    }
    assert AREA_TYPES | {"keypointlabels", "choices"} <= kinds
    exif = tasks[ls_export.task_ids[EXIF_JPEG]]["annotations"][0]["result"]
    brush = next(item for item in exif if item["type"] == "brushlabels")
    assert (brush["original_width"], brush["original_height"]) == (480, 640)
    alpha = np.asarray(decode_rle(brush["value"]["rle"]), np.uint8).reshape(640, 480, 4)[:, :, 3]
    assert ((alpha > 0) & (alpha < 255)).any(), "brush strokes must be anti-aliased"
    bitmask = next(item for item in exif if item["type"] == "bitmasklabels")
    png = base64.b64decode(bitmask["value"]["imageDataURL"].split(",", 1)[1])
    with Image.open(io.BytesIO(png)) as image:
        assert (image.mode, image.size) == ("RGBA", (480, 640))
        bitmask_alpha = np.asarray(image)[:, :, 3]
    assert ((bitmask_alpha > 0) & (bitmask_alpha < 255)).any()


def test_json_min_has_one_record_per_usable_annotation(ls_export: LabelStudioExport) -> None:
    records = _load(ls_export.json_min_path)
    annotated = [r for r in records if r["annotation_id"] is not None]
    assert len(annotated) == 4  # 2 + 1 + 1: skipped annotations are not exported
    unannotated = {r["id"] for r in records if r["annotation_id"] is None}
    assert unannotated == {ls_export.task_ids[UNLABELED]}
    assert all("id" not in value for r in annotated for value in r.get("polygon", []))


def test_conversion_succeeds_for_exactly_the_annotated_images(
    converted: tuple[Conversion, dict[str, ReferenceImage]], ls_export: LabelStudioExport
) -> None:
    conversion, reference = converted
    assert conversion.exit_code == 0, conversion.output
    assert set(reference) == ls_export.expected_images
    assert set(conversion.snapshot) == ls_export.expected_images
    assert SKIPPED_ONLY not in conversion.snapshot and UNLABELED not in conversion.snapshot
    assert conversion.id2label == EXPECTED_ID2LABEL


def test_entries_keep_the_output_contract(
    converted: tuple[Conversion, dict[str, ReferenceImage]],
) -> None:
    conversion, reference = converted
    for name, entry in conversion.snapshot.items():
        assert set(entry) == {"panoptic_mask", "inst2class"}
        mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
        assert mask.dtype == np.uint32 and mask.flags.c_contiguous
        assert mask.shape == reference[name].classes.shape, name
        ids = sorted(int(i) for i in np.unique(mask))
        assert ids == list(range(1, len(ids) + 1)), f"{name}: ids not dense from 1"
        assert sorted(inst2class) == ids
        assert all(type(k) is int and type(v) is int for k, v in inst2class.items())
        background = [i for i, c in inst2class.items() if conversion.id2label[c] == BACKGROUND]
        assert len(background) == 1, f"{name}: background must be one segment"


def test_exif_image_is_in_the_display_frame(
    converted: tuple[Conversion, dict[str, ReferenceImage]],
) -> None:
    conversion, _ = converted
    assert conversion.snapshot[EXIF_JPEG]["panoptic_mask"].shape == (640, 480)


def test_classes_agree_with_the_reference(
    converted: tuple[Conversion, dict[str, ReferenceImage]],
) -> None:
    conversion, reference = converted
    for name, entry in conversion.snapshot.items():
        classes = class_map(entry, conversion.id2label)
        agreement = float(np.mean(classes == reference[name].classes))
        assert agreement >= MIN_AGREEMENT, f"{name}: {agreement:.4%} of pixels agree"


def test_instances_agree_with_the_reference_regions(
    converted: tuple[Conversion, dict[str, ReferenceImage]],
) -> None:
    conversion, reference = converted
    for name, entry in conversion.snapshot.items():
        agreement, problems = partition_agreement(entry["panoptic_mask"], reference[name])
        assert not problems, f"{name}: {problems}"
        assert agreement >= MIN_AGREEMENT, f"{name}: {agreement:.4%} of pixels agree"


def test_skipped_and_superseded_annotations_are_not_used(
    converted: tuple[Conversion, dict[str, ReferenceImage]], ls_export: LabelStudioExport
) -> None:
    conversion, _ = converted
    for name, result in ls_export.unused_results.items():
        task = {"id": 0, "data": {"image": name}, "annotations": [
            {"result": result, "was_cancelled": False, "updated_at": "2000-01-01T00:00:00Z"}
        ]}  # fmt: skip
        unused = reference_conversion([task])[name]
        classes = class_map(conversion.snapshot[name], conversion.id2label)
        assert float(np.mean(classes == unused.classes)) < 0.9, f"{name}: wrong annotation used"


def test_unknown_label_fails_only_its_image(ls_export: LabelStudioExport, tmp_path: Path) -> None:
    case = ls_export.unknown_label
    conversion = run_cli_convert(ls_export.unknown_label_path, ls_export, tmp_path)
    assert conversion.exit_code == 1, conversion.output
    lines = [line for line in conversion.output.splitlines() if case.label in line]
    assert any(str(case.task_id) in line and case.region_id in line for line in lines), (
        conversion.output
    )
    assert set(conversion.snapshot) == ls_export.expected_images - {case.image}
    reference = reference_conversion(_load(ls_export.unknown_label_path))
    for name, entry in conversion.snapshot.items():
        classes = class_map(entry, conversion.id2label)
        assert float(np.mean(classes == reference[name].classes)) >= MIN_AGREEMENT, name

"""Build a Label Studio project through the REST API and export it, as a user would.

The project (label config ``LABEL_CONFIG``: brush, bitmask, polygon, rectangle, ellipse, keypoint
and choices controls sharing the labels leaf, stem, tomato) holds five uploaded images:

==================== ======================================================================
tomato_plant.png     two annotations; the OLDER one is updated last, so it is the latest by
                     ``updated_at`` while the other is the latest by creation and id
greenhouse_exif.jpg  JPEG stored 640x480 with EXIF orientation 6, annotated in the display
                     frame 480x640; later gets an annotation with a label outside the config
seedling.jpg         a usable annotation, then a newer SKIPPED one covering everything
skipped_only.png     only a skipped annotation: must not appear in any output
unlabeled.png        no annotation at all: must not appear in any output
==================== ======================================================================

Exports (``download_all_tasks=true``): JSON and JSON_MIN of that state, then, after the
unknown-label annotation is added, a second JSON export.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lsclient import LabelStudioClient
from .reference import image_key
from .scene import (
    EXIF_JPEG,
    LABELS,
    PLAIN_JPEG,
    PNG,
    SKIPPED_ONLY,
    ResultBuilder,
    SceneImage,
    make_images,
    plant_result,
)

__all__ = ["LABEL_CONFIG", "LabelStudioExport", "UnknownLabelCase", "build_export"]

Result = list[dict[str, Any]]


def _labels() -> str:
    return "".join(f'<Label value="{label}"/>' for label in LABELS)


LABEL_CONFIG = f"""<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="brush" toName="image">{_labels()}</BrushLabels>
  <BitmaskLabels name="bitmask" toName="image">{_labels()}</BitmaskLabels>
  <PolygonLabels name="polygon" toName="image">{_labels()}</PolygonLabels>
  <RectangleLabels name="rect" toName="image">{_labels()}</RectangleLabels>
  <EllipseLabels name="ellipse" toName="image">{_labels()}</EllipseLabels>
  <KeyPointLabels name="keypoint" toName="image">{_labels()}</KeyPointLabels>
  <Choices name="quality" toName="image"><Choice value="good"/><Choice value="blurry"/></Choices>
</View>
"""
UNKNOWN_LABEL = "weed"
#: Label Studio timestamps have microseconds; a pause keeps updated_at strictly ordered
_PAUSE = 0.02


@dataclass(frozen=True)
class UnknownLabelCase:
    """The region whose label is not in the label config (only in ``unknown_label_path``)."""

    image: str
    task_id: int
    region_id: str
    label: str


@dataclass(frozen=True)
class LabelStudioExport:
    """A real export on disk plus what the tests expect of it.

    Attributes:
        root: folder holding everything below.
        json_path, json_min_path: the project's JSON and JSON_MIN exports.
        unknown_label_path: a later JSON export in which ``unknown_label.image`` has a newer
            annotation with one region labelled outside the config.
        images_dir: the images as Label Studio serves them back, under the names users know.
        label_config_path: the project's label config as Label Studio stores it.
        task_ids: image name -> task id.
        expected_images: images with a usable annotation (the only ones a conversion writes).
        exif_image: the JPEG with EXIF orientation 6 (display size 480x640).
        unused_results: image name -> a result that must NOT be the one converted
            (the skipped annotation, or the annotation superseded by a later update).
        build_seconds: time spent building and exporting.
    """

    root: Path
    project_id: int
    json_path: Path
    json_min_path: Path
    unknown_label_path: Path
    images_dir: Path
    label_config_path: Path
    task_ids: Mapping[str, int]
    expected_images: frozenset[str]
    exif_image: str
    unused_results: Mapping[str, Result]
    unknown_label: UnknownLabelCase
    build_seconds: float


def _upload(
    client: LabelStudioClient, project_id: int, images: list[SceneImage]
) -> dict[str, dict[str, Any]]:
    """Upload every image (one task each); image name -> task."""
    report = client.import_files(project_id, {image.name: image.data for image in images})
    if report["task_count"] != len(images):
        raise RuntimeError(f"expected {len(images)} tasks from the upload, got {report}")
    return {image_key(task["data"]["image"]): task for task in client.list_tasks(project_id)}


def _annotate(
    client: LabelStudioClient, tasks: Mapping[str, dict[str, Any]], images: list[SceneImage]
) -> dict[str, Result]:
    """Create every annotation; returns the results that must lose, by image name."""
    size = {image.name: (image.width, image.height) for image in images}

    def plant(name: str, seed: int, variant: int) -> Result:
        return plant_result(ResultBuilder(*size[name], seed=seed), variant)

    def cover(name: str, seed: int, label: str) -> Result:
        return [ResultBuilder(*size[name], seed=seed).rectangle(label, (0, 0, 1, 1), 0.0)]

    def annotate(name: str, result: Result, *, skipped: bool = False) -> dict[str, Any]:
        time.sleep(_PAUSE)
        return client.create_annotation(tasks[name]["id"], result, was_cancelled=skipped)

    first = annotate(PNG, plant(PNG, 1, variant=0))
    superseded = plant(PNG, 2, variant=1)
    annotate(PNG, superseded)
    time.sleep(_PAUSE)
    client.update_annotation(first["id"], plant(PNG, 3, variant=2))
    annotate(EXIF_JPEG, plant(EXIF_JPEG, 4, variant=1))
    annotate(PLAIN_JPEG, plant(PLAIN_JPEG, 5, variant=2))
    skipped = cover(PLAIN_JPEG, 6, "stem")
    annotate(PLAIN_JPEG, skipped, skipped=True)
    annotate(SKIPPED_ONLY, cover(SKIPPED_ONLY, 7, "leaf"), skipped=True)
    return {PNG: superseded, PLAIN_JPEG: skipped}


def _add_unknown_label(
    client: LabelStudioClient, task: dict[str, Any], image: SceneImage
) -> UnknownLabelCase:
    """A newer annotation on ``task`` whose last region is labelled ``UNKNOWN_LABEL``.

    Label Studio 1.23.2 accepts it: the API does not check labels against the config.
    """
    builder = ResultBuilder(image.width, image.height, seed=8)
    weed = builder.polygon(UNKNOWN_LABEL, [(0.40, 0.40), (0.60, 0.42), (0.50, 0.58)])
    client.create_annotation(task["id"], [*plant_result(builder, 0), weed])
    return UnknownLabelCase(image.name, int(task["id"]), weed["id"], UNKNOWN_LABEL)


def _save_images(
    client: LabelStudioClient,
    tasks: Mapping[str, dict[str, Any]],
    images: list[SceneImage],
    folder: Path,
) -> None:
    """Download each upload back from Label Studio under the name the user knows."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        served = client.download(tasks[image.name]["data"]["image"])
        if served != image.data:
            raise RuntimeError(f"Label Studio served {image.name} with different bytes")
        (folder / image.name).write_bytes(served)


def build_export(client: LabelStudioClient, root: Path) -> LabelStudioExport:
    """Create the project, annotate it, export it into ``root``; see the module docstring."""
    started = time.monotonic()
    images = make_images()
    project_id = int(client.create_project("ls-panoptic e2e", LABEL_CONFIG)["id"])
    tasks = _upload(client, project_id, images)
    unused = _annotate(client, tasks, images)
    paths = {name: root / f"export-{name}.json" for name in ("JSON", "JSON_MIN", "unknown-label")}
    for export_type in ("JSON", "JSON_MIN"):
        paths[export_type].write_bytes(client.export(project_id, export_type))
    exif = next(image for image in images if image.name == EXIF_JPEG)
    unknown = _add_unknown_label(client, tasks[exif.name], exif)
    paths["unknown-label"].write_bytes(client.export(project_id, "JSON"))
    _save_images(client, tasks, images, root / "images")
    config_path = root / "label_config.xml"
    config_path.write_text(client.get_project(project_id)["label_config"])
    (root / "tasks.json").write_text(json.dumps(tasks, indent=1))
    return LabelStudioExport(
        root=root,
        project_id=project_id,
        json_path=paths["JSON"],
        json_min_path=paths["JSON_MIN"],
        unknown_label_path=paths["unknown-label"],
        images_dir=root / "images",
        label_config_path=config_path,
        task_ids={name: int(task["id"]) for name, task in tasks.items()},
        expected_images=frozenset({PNG, EXIF_JPEG, PLAIN_JPEG}),
        exif_image=exif.name,
        unused_results=unused,
        unknown_label=unknown,
        build_seconds=time.monotonic() - started,
    )

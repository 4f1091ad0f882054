"""Build the field-data project (DESIGN 3.8) in a real Label Studio, through its API.

The images are uploaded to a media project of their own; the field project's tasks are then
imported as JSON (``{"data": {"image": <upload URL>}, "predictions": [...]}``), so predictions
arrive as pre-annotations do, and every annotation is created through
``POST /api/tasks/<id>/annotations/`` exactly as written in :mod:`tests.e2e.field_results`
(some without ``original_width``/``original_height``, as API-made ones may be).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._sync_helpers import small_image
from .field_results import FIELD_CONFIG, FieldTask, field_tasks
from .lsclient import LabelStudioClient
from .reference import image_key
from .scene import SceneImage

__all__ = ["FieldProject", "build_field_project"]

_MEDIA_CONFIG = '<View><Image name="image" value="$image"/></View>'


@dataclass(frozen=True)
class FieldProject:
    """The built project.

    Attributes:
        project_id: the field project; ``media_project_id``: where the images were uploaded.
        root: folder holding ``images/`` (the uploads as Label Studio serves them back) and
            ``label_config.xml`` (as Label Studio stores it).
        tasks: image name -> the task as created; ``task_ids``: image name -> task id.
        build_seconds: time spent building it.
    """

    project_id: int
    media_project_id: int
    root: Path
    tasks: Mapping[str, FieldTask]
    task_ids: Mapping[str, int]
    build_seconds: float

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def label_config_path(self) -> Path:
        return self.root / "label_config.xml"

    def shape(self, name: str) -> tuple[int, int]:
        """``(height, width)`` of the image ``name``."""
        return self.tasks[name].shape


def _upload_media(
    client: LabelStudioClient, images: list[SceneImage], folder: Path
) -> tuple[int, dict[str, str]]:
    """Upload the images to a project of their own; image name -> upload URL. Each is fetched
    back into ``folder`` (the batch conversion's ``--images``)."""
    media = int(client.create_project("field data media", _MEDIA_CONFIG)["id"])
    client.import_files(media, {image.name: image.data for image in images})
    urls = {image_key(t["data"]["image"]): t["data"]["image"] for t in client.list_tasks(media)}
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        served = client.download(urls[image.name])
        if served != image.data:
            raise RuntimeError(f"Label Studio served {image.name} with different bytes")
        (folder / image.name).write_bytes(served)
    return media, urls


def _import(
    client: LabelStudioClient, project: int, tasks: list[FieldTask], urls: Mapping[str, str]
) -> dict[str, int]:
    """Import the tasks as JSON, predictions included; image name -> task id."""
    records = [
        {
            "data": {"image": urls[t.name]},
            "predictions": [
                {"model_version": f"m{i}", "score": 0.5, "result": result}
                for i, result in enumerate(t.predictions)
            ],
        }
        for t in tasks
    ]
    report = client.import_tasks(project, records)
    expected = sum(len(t.predictions) for t in tasks)
    if (report["task_count"], report["prediction_count"]) != (len(tasks), expected):
        raise RuntimeError(f"expected {len(tasks)} tasks, {expected} predictions: {report}")
    return {image_key(t["data"]["image"]): int(t["id"]) for t in client.list_tasks(project)}


def build_field_project(client: LabelStudioClient, root: Path) -> FieldProject:
    """Create, import and annotate the project; see the module docstring."""
    started = time.monotonic()
    tasks = field_tasks()
    images = [small_image(t.name, t.width, t.height, seed) for seed, t in enumerate(tasks)]
    media, urls = _upload_media(client, images, root / "images")
    project = int(client.create_project("ls-panoptic field data", FIELD_CONFIG)["id"])
    ids = _import(client, project, tasks, urls)
    for task in tasks:
        if task.annotation is not None:
            client.create_annotation(ids[task.name], task.annotation)
    (root / "label_config.xml").write_text(client.get_project(project)["label_config"])
    (root / "tasks.json").write_text(json.dumps(ids, indent=1))
    by_name = {t.name: t for t in tasks}
    return FieldProject(project, media, root, by_name, ids, time.monotonic() - started)

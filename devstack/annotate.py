"""The Label Studio side of ``ls-panoptic up --demo``: annotate like a person would.

A project with the synthetic labeling config gets the synthetic images (one upload each, the
EXIF-rotated JPEG included), then, once the webhook is connected, the synthetic annotations
through Label Studio's API: per image an older and a newer annotation holding every region
kind, skipped (cancelled) annotations on some, one annotation created short of three regions
and then updated, and one image whose only annotation is skipped (so it gets no entry). Each
of these calls makes Label Studio post a webhook to the backend, inline.

Requests go through label-studio-sdk (a legacy token or a personal access token), except the
multipart upload, which the SDK does not offer: it carries the SDK's own auth header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from label_studio_sdk import LabelStudio

__all__ = ["DemoLabelStudio", "Scenario", "annotate"]

#: seconds per request (an export of a handful of tasks takes well under one)
REQUEST_TIMEOUT = 60.0
#: regions the updated annotation lacks before its update
REGIONS_ADDED_BY_UPDATE = 3


@dataclass(frozen=True)
class Scenario:
    """What was done in Label Studio and what the store must hold afterwards.

    ``expected`` maps every task id to the annotation its entry must come from, or ``None``
    when the task has no usable annotation (no entry). ``created`` annotations, ``skipped`` of
    them cancelled; ``updated`` and ``skipped_task``: (annotation or task id, image name).
    """

    expected: dict[int, int | None]
    created: int
    skipped: int
    updated: tuple[int, str]
    skipped_task: tuple[int, str]


class DemoLabelStudio:
    """The few Label Studio calls of the demo."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        # the trailing slash keeps a path prefix in the SDK's token refresh URL (urljoin)
        self._sdk = LabelStudio(  # type: ignore[no-untyped-call]
            base_url=self.url + "/", api_key=api_key, timeout=REQUEST_TIMEOUT
        )

    def whoami(self) -> str:
        """The e-mail of the key's user (fails early on a bad key)."""
        return str(self._sdk.users.whoami().email or "")

    def create_project(self, title: str, label_config: str) -> int:
        project = self._sdk.projects.create(title=title, label_config=label_config)
        if project.id is None:
            raise RuntimeError("Label Studio created a project without an id")
        return int(project.id)

    def upload(self, project_id: int, images: list[Path]) -> dict[str, int]:
        """One task per image (one multipart field each); returns file name -> task id."""
        files = {
            f"file{i}": (path.name, path.read_bytes(), "application/octet-stream")
            for i, path in enumerate(images)
        }
        headers = {"Authorization": self._sdk._client_wrapper.get_headers()["Authorization"]}
        response = httpx.post(
            f"{self.url}/api/projects/{project_id}/import",
            files=files,
            headers=headers,
            timeout=REQUEST_TIMEOUT,
        )
        if response.is_error:
            raise RuntimeError(f"upload -> {response.status_code}: {response.text[:300]}")
        tasks: dict[str, int] = {}
        task: Any
        for task in self._sdk.tasks.list(project=project_id):
            url = str((task.data or {}).get("image", ""))
            tasks[url.rsplit("/", 1)[-1].split("-", 1)[-1]] = int(task.id or 0)
        return tasks

    def create_annotation(
        self, task_id: int, result: list[dict[str, Any]], *, cancelled: bool = False
    ) -> int:
        annotation = self._sdk.annotations.create(
            id=task_id, result=result, was_cancelled=cancelled, ground_truth=False
        )
        return int(annotation.id or 0)

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> None:
        self._sdk.annotations.update(id=annotation_id, result=result)

    def export_json(self, project_id: int, path: Path) -> None:
        """Label Studio's own JSON export of every task, written to ``path``."""
        chunks = self._sdk.projects.exports.download_sync(
            project_id, export_type="JSON", download_all_tasks=True
        )
        path.write_bytes(b"".join(chunks))


def _name(record: dict[str, Any]) -> str:
    """``plant_000.jpg`` from the synthetic task's ``/data/upload/1/<8 hex>-plant_000.jpg``."""
    return str(record["data"]["image"]).rsplit("/", 1)[-1].split("-", 1)[-1]


def _post(
    ls: DemoLabelStudio, task_id: int, annotations: list[dict[str, Any]], update: bool
) -> tuple[int, int, int | None]:
    """Create a task's synthetic annotations in their order; the last usable one is created
    short of some regions and then updated when ``update``. Returns (the annotation the
    entry must come from, how many were skipped, the updated annotation or None)."""
    usable = [a for a in annotations if not a["was_cancelled"]]
    used, skipped, updated = 0, 0, None
    for annotation in annotations:
        if annotation["was_cancelled"]:
            ls.create_annotation(task_id, [], cancelled=True)
            skipped += 1
            continue
        result: list[dict[str, Any]] = annotation["result"]
        partial = update and annotation is usable[-1]
        used = ls.create_annotation(
            task_id, result[:-REGIONS_ADDED_BY_UPDATE] if partial else result
        )
        if partial:
            ls.update_annotation(used, result)
            updated = used
    return used, skipped, updated


def annotate(ls: DemoLabelStudio, tasks: dict[str, int], synthetic_export: Path) -> Scenario:
    """Replay the synthetic project's annotations on ``tasks`` (file name -> task id)."""
    records: list[dict[str, Any]] = json.loads(synthetic_export.read_text())
    expected: dict[int, int | None] = {}
    created = skipped = 0
    updated: tuple[int, str] | None = None
    for index, record in enumerate(records):
        task_id = tasks[_name(record)]
        if index == len(records) - 1:  # the image an annotator skipped
            ls.create_annotation(task_id, [], cancelled=True)
            expected[task_id], skipped = None, skipped + 1
            continue
        used, n_skipped, changed = _post(ls, task_id, record["annotations"], update=index == 0)
        expected[task_id] = used
        created += len(record["annotations"])
        skipped += n_skipped
        if changed is not None:
            updated = (changed, _name(record))
    last = records[-1]
    if updated is None:
        raise RuntimeError("the synthetic project has no annotation to update")
    return Scenario(expected, created + 1, skipped, updated, (tasks[_name(last)], _name(last)))

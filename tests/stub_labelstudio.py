"""Label Studio as the worker's jobs see it (``worker.runtime.LabelStudioAPI``), in memory: tasks
as its API returns them, one project ``P`` with label config ``CONFIG``. The real one runs in
tests/e2e.

Task stamps move as Label Studio 1.23 moves a task's ``updated_at`` (on every change of the task
or its annotations): a task's stamp is ``OLD_STAMP`` until its content differs from what it was
when added, then the time the stamps are next listed, and again after each later change. So a
test may edit ``stub.tasks`` in place and a resync finds the change, as it would by the real
client's stamps."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from ls_panoptic.images import ImageInfo
from ls_panoptic.model import Task
from ls_panoptic.tasks import task_from_dict
from worker.labelstudio import (
    LabelStudioNotFound,
    LabelStudioUnavailable,
    ProjectInfo,
    TaskStamp,
    UnusableTask,
)

P = 7  # the project
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="leaf"/><Label value="stem"/></PolygonLabels>
</View>"""
OLD_STAMP = "2024-05-01T10:00:00.000000Z"  # a task's updated_at until it changes


class StubLabelStudio:
    """``pulls`` counts ``get_task`` calls (= conversions), ``config_fetches`` the
    ``get_project`` calls; ``unavailable`` makes ``get_task`` fail as an outage does;
    ``on_pull(task_id)`` runs inside each pull; ``full`` counts the tasks listed in full.
    Safe to feed from another thread."""

    def __init__(self) -> None:
        self.config = CONFIG
        self.tasks: dict[int, dict[str, Any]] = {}
        self.pulls: Counter[int] = Counter()
        self.config_fetches = 0
        self.on_pull: Callable[[int], None] | None = None
        self.unavailable = False
        self.lock = threading.Lock()
        self.full = 0
        self._stamps: dict[int, tuple[str, str]] = {}  # task -> (content seen, its stamp)

    def add(self, task_id: int, *annotations: dict[str, Any]) -> None:
        data = {"image": f"/data/upload/{P}/0123abcd-img{task_id}.jpg"}
        with self.lock:
            self.tasks[task_id] = {"id": task_id, "data": data, "annotations": list(annotations)}
            self._stamps[task_id] = (_content(self.tasks[task_id]), OLD_STAMP)

    def get_project(self, project_id: int) -> ProjectInfo:
        if project_id != P:
            raise LabelStudioNotFound(f"project {project_id}")
        self.config_fetches += 1
        return ProjectInfo(P, self.config, "stub")

    def get_task(self, task_id: int) -> tuple[int, Task]:
        if self.unavailable:
            raise LabelStudioUnavailable("stub: Label Studio is down")
        with self.lock:
            self.pulls[task_id] += 1
        if self.on_pull is not None:
            self.on_pull(task_id)
        with self.lock:
            if task_id not in self.tasks:
                raise LabelStudioNotFound(f"task {task_id}")
            self._seen(task_id)
            return P, task_from_dict(self.tasks[task_id])

    def list_tasks(
        self, project_id: int, ids: Collection[int] | None = None
    ) -> Iterator[Task | UnusableTask]:
        with self.lock:
            rows = [self.tasks[key] for key in sorted(self.tasks) if ids is None or key in ids]
            for row in rows:
                self._seen(row["id"])
        for row in rows:
            self.full += 1
            yield task_from_dict(row)

    def task_stamps(self, project_id: int) -> Iterator[TaskStamp]:
        moved = dt.datetime.now(dt.timezone.utc).isoformat()
        with self.lock:
            stamps = []
            for task_id in sorted(self.tasks):
                task = self.tasks[task_id]
                seen, stamp = self._seen(task_id)
                content = _content(task)
                if content != seen:
                    stamp = moved
                    self._stamps[task_id] = (content, stamp)
                usable = [a for a in task["annotations"] if not a.get("was_cancelled")]
                stamps.append(
                    TaskStamp(task_id, stamp, len(usable), len(task.get("predictions", [])))
                )
        yield from stamps

    def _seen(self, task_id: int) -> tuple[str, str]:
        """The content and stamp recorded for the task; its current content with ``OLD_STAMP``
        when none is (a task a test put in ``tasks`` itself). Under ``lock``."""
        return self._stamps.setdefault(task_id, (_content(self.tasks[task_id]), OLD_STAMP))

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None:
        raise AssertionError("regions give the size: the image must not be fetched")


def _content(task: dict[str, Any]) -> str:
    return json.dumps(task, sort_keys=True, default=str)

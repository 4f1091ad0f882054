"""Label Studio as the worker's jobs see it (``worker.runtime.LabelStudioAPI``), in memory: tasks
as its API returns them, one project ``P`` with label config ``CONFIG``. The real one runs in
tests/e2e."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ls_panoptic.images import ImageInfo
from ls_panoptic.model import Task
from ls_panoptic.tasks import task_from_dict
from worker.labelstudio import LabelStudioNotFound, LabelStudioUnavailable, ProjectInfo

P = 7  # the project
CONFIG = """<View><Image name="image" value="$image"/>
<PolygonLabels name="poly" toName="image"><Label value="leaf"/><Label value="stem"/></PolygonLabels>
</View>"""


class StubLabelStudio:
    """``pulls`` counts ``get_task`` calls (= conversions), ``config_fetches`` the
    ``get_project`` calls; ``unavailable`` makes ``get_task`` fail as an outage does;
    ``on_pull(task_id)`` runs inside each pull. Safe to feed from another thread."""

    def __init__(self) -> None:
        self.config = CONFIG
        self.tasks: dict[int, dict[str, Any]] = {}
        self.pulls: Counter[int] = Counter()
        self.config_fetches = 0
        self.on_pull: Callable[[int], None] | None = None
        self.unavailable = False
        self.lock = threading.Lock()

    def add(self, task_id: int, *annotations: dict[str, Any]) -> None:
        data = {"image": f"/data/upload/{P}/0123abcd-img{task_id}.jpg"}
        with self.lock:
            self.tasks[task_id] = {"id": task_id, "data": data, "annotations": list(annotations)}

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
            return P, task_from_dict(self.tasks[task_id])

    def list_tasks(self, project_id: int) -> Iterator[Task]:
        with self.lock:
            rows = [self.tasks[task_id] for task_id in sorted(self.tasks)]
        for row in rows:
            yield task_from_dict(row)

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None:
        raise AssertionError("regions give the size: the image must not be fetched")

"""The checking side of ``ls-panoptic up --demo``: wait for the store, fetch the snapshot from
the backend, draw previews, convert Label Studio's export in batch and compare the two.

Label Studio 1.23.2 (open source) posts webhooks inline, before the annotation request
returns, and the backend enqueues before it answers: once the last annotation call is back,
every sync job exists. The store has settled when every task's state names the expected
annotation (or ``empty``) and the run's queue has nothing queued, running or waiting for a
retry, twice in a row.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rq import Queue

from ls_panoptic.labels import labelset_from_config
from ls_panoptic.preview import render_preview
from ls_panoptic.snapshot import sidecar_path
from worker.jobqueue import SERIALIZER

from .services import run_ls_panoptic
from .steps import StepFailed

__all__ = ["Backend", "Comparison", "batch_convert", "compare", "wait_for_store", "write_previews"]

POLL_INTERVAL = 0.5
#: seconds ``ls-panoptic convert`` may take (a handful of small images: a few seconds)
CONVERT_TIMEOUT = 300.0
#: how many consecutive settled polls end the wait
SETTLED_POLLS = 2
_MAX_LISTED = 5


class Backend:
    """The backend's project API, with the API token."""

    def __init__(self, url: str, api_token: str) -> None:
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_token}"}, timeout=60.0
        )

    def close(self) -> None:
        self._http.close()

    def states(self, project: int) -> dict[int, dict[str, Any]]:
        """Task id -> state record (``GET /projects/<id>/entries``); empty while unknown."""
        response = self._http.get(f"/projects/{project}/entries")
        if response.status_code == 404:
            return {}
        response.raise_for_status()
        return {int(state["task_id"]): state for state in response.json()}

    def download(self, path: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._http.stream("GET", path) as response:
            response.raise_for_status()
            with dest.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)


def _matches(state: dict[str, Any] | None, annotation: int | None) -> bool:
    if state is None:
        return False
    if annotation is None:
        return bool(state["status"] == "empty")
    return bool(state["status"] == "ok" and state["annotation_id"] == annotation)


def _drained(connection: redis.Redis, queue_name: str) -> bool:
    """Nothing queued, running, or scheduled for a retry (the periodic resync aside)."""
    queue = Queue(queue_name, connection=connection, serializer=SERIALIZER)
    retries = [j for j in queue.scheduled_job_registry.get_job_ids() if "resync-all" not in j]
    return bool(queue.count == 0 and queue.started_job_registry.count == 0 and not retries)


def _settled(backend: Backend, project: int, expected: dict[int, int | None], log: Path) -> int:
    """How many tasks hold their expected state; raises on a task the worker failed."""
    states = backend.states(project)
    for task_id, state in sorted(states.items()):
        if state["status"] == "error":
            raise StepFailed(f"the worker failed task {task_id}: {state['error']}", log)
    return sum(_matches(states.get(task), annotation) for task, annotation in expected.items())


def wait_for_store(
    backend: Backend,
    project: int,
    expected: dict[int, int | None],
    queue: tuple[redis.Redis, str],
    check: Callable[[], None],
    console: Console,
    timeout: float,
    worker_log: Path,
) -> float:
    """Poll until the store matches ``expected`` (see module doc); returns the seconds waited.
    ``check`` raises if a process of the stack died."""
    started = time.monotonic()
    columns = (
        TextColumn("    store"), BarColumn(), MofNCompleteColumn(),
        TextColumn("tasks current"), TimeElapsedColumn(),
    )  # fmt: skip
    calm = 0
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("store", total=len(expected))
        while calm < SETTLED_POLLS:
            check()
            done = _settled(backend, project, expected, worker_log)
            progress.update(bar, completed=done)
            calm = calm + 1 if done == len(expected) and _drained(*queue) else 0
            if time.monotonic() - started > timeout:
                raise StepFailed(
                    f"after {timeout:.0f} s the store holds {done} of {len(expected)} tasks as "
                    "expected: did Label Studio deliver its webhooks? (it must reach the "
                    "backend on 127.0.0.1; see the backend and worker logs)",
                    worker_log,
                )
            time.sleep(0 if calm >= SETTLED_POLLS else POLL_INTERVAL)
    return time.monotonic() - started


def write_previews(snapshot: Path, images: Path, label_config: str, folder: Path) -> int:
    """One ``<key>.preview.png`` per entry: the mask over the image as the browser shows it."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = labelset_from_config(label_config)
    with snapshot.open("rb") as file:
        entries: dict[str, dict[str, Any]] = pickle.load(file)
    for key, entry in entries.items():
        photo = None
        if (images / key).is_file():
            with Image.open(images / key) as img:
                photo = ImageOps.exif_transpose(img)
        mask, inst2class = entry["panoptic_mask"], entry["inst2class"]
        picture = render_preview(mask, inst2class, labels.background_id, photo, labels.id2label)
        picture.save(folder / f"{key.replace('/', '__')}.preview.png")
    return len(entries)


def batch_convert(
    export: Path, images: Path, config: Path, output: Path, env: Mapping[str, str], log: Path
) -> int:
    """``ls-panoptic convert EXPORT --images --label-config --output``: how many written.

    Raises:
        StepFailed: an image failed to convert (the first failure's message), or the command
            did (its exit code).
    """
    args = ["convert", str(export), "--images", str(images), "--label-config", str(config),
            "--output", str(output), "--quiet"]  # fmt: skip
    code = run_ls_panoptic(args, env, log, CONVERT_TIMEOUT)
    sidecar = sidecar_path(output)
    written = json.loads(sidecar.read_text()) if code in (0, 1) and sidecar.is_file() else None
    if written is not None and written["failures"]:
        raise StepFailed(f"the batch conversion failed: {written['failures'][0]['message']}", log)
    if code != 0 or written is None:
        raise StepFailed(f"ls-panoptic convert exited with code {code}", log)
    return len(written["entries"])


@dataclass(frozen=True)
class Comparison:
    """The live snapshot against the batch conversion."""

    entries: int
    differences: list[str]
    identical_files: bool
    sha256: str

    @property
    def equal(self) -> bool:
        return not self.differences


def _entry_differences(key: str, live: dict[str, Any], batch: dict[str, Any]) -> list[str]:
    a, b = live["panoptic_mask"], batch["panoptic_mask"]
    if a.dtype != b.dtype or a.shape != b.shape:
        return [f"{key}: mask {a.dtype} {a.shape} live, {b.dtype} {b.shape} batch"]
    found = []
    if not np.array_equal(a, b):
        found.append(f"{key}: {int(np.count_nonzero(a != b))} mask pixels differ")
    if live["inst2class"] != batch["inst2class"]:
        found.append(f"{key}: inst2class {live['inst2class']} live, {batch['inst2class']} batch")
    return found


def compare(live: Path, batch: Path) -> Comparison:
    """Same keys, masks equal bit for bit (dtype, shape, values), same ``inst2class``."""
    with live.open("rb") as file:
        ours: dict[str, dict[str, Any]] = pickle.load(file)
    with batch.open("rb") as file:
        theirs: dict[str, dict[str, Any]] = pickle.load(file)
    differences = [f"only in the live snapshot: {k}" for k in sorted(ours.keys() - theirs)]
    differences += [f"only in the batch conversion: {k}" for k in sorted(theirs.keys() - ours)]
    for key in sorted(ours.keys() & theirs.keys()):
        differences += _entry_differences(key, ours[key], theirs[key])
    if len(differences) > _MAX_LISTED:
        differences[_MAX_LISTED:] = [f"... and {len(differences) - _MAX_LISTED} more"]
    live_bytes, batch_bytes = live.read_bytes(), batch.read_bytes()
    return Comparison(
        len(ours), differences, live_bytes == batch_bytes, hashlib.sha256(live_bytes).hexdigest()
    )

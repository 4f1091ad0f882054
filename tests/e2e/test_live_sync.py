"""The live service's worker against a real Label Studio 1.23.2 and a real Redis.

A project is built through Label Studio's REST API; the events a webhook would bring are
enqueued by hand through the ``Dispatcher`` (or deliberately not: a lost webhook), and the jobs
run in-process in an rq ``SimpleWorker`` (JSON serializer, burst mode). After each step the
store's snapshot (written by ``ls-panoptic snapshot``) must be byte-identical to the batch
conversion (``ls-panoptic convert``'s ``run_convert``) of Label Studio's own export of the
project at that moment.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from click.testing import CliRunner
from rq import SimpleWorker

from cli.convert import run_convert
from cli.store_cmds import resync, snapshot
from worker import reconcile, runtime
from worker.queueing import SERIALIZER
from worker.settings import Settings

from .build_project import LABEL_CONFIG
from .lsclient import LabelStudioClient
from .lsserver import LabelStudioServer
from .reference import image_key
from .scene import EXIF_JPEG, PLAIN_JPEG, PNG, SKIPPED_ONLY, UNLABELED, ResultBuilder, make_images
from .scene import plant_result as plant

pytestmark = pytest.mark.e2e

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
PREFIX = "lspe2e"


@pytest.fixture
def redis_url() -> str:
    """The test database: ``LSP_TEST_REDIS_URL``, default DB 15 (flushed by the tests)."""
    return os.environ.get("LSP_TEST_REDIS_URL", "").strip() or DEFAULT_TEST_REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database, flushed around the test."""
    url = redis_url
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("LSP_REDIS_REQUIRED", "").strip() == "1":
            pytest.fail(f"Redis at {url} is unreachable ({exc})", pytrace=False)
        pytest.skip(f"Redis at {url} is unreachable ({exc})")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@dataclass
class LiveProject:
    """One Label Studio project, its tasks by image name, and the worker context on it."""

    ls: LabelStudioClient
    server: LabelStudioServer
    rt: runtime.Runtime
    project: int
    tasks: dict[str, int]
    sizes: dict[str, tuple[int, int]]
    root: Path

    def annotate(self, name: str, seed: int, variant: int, skipped: bool = False) -> int:
        time.sleep(0.02)  # Label Studio stamps with microseconds: keep updated_at ordered
        result = plant(ResultBuilder(*self.sizes[name], seed=seed), variant)
        made = self.ls.create_annotation(self.tasks[name], result, was_cancelled=skipped)
        return int(made["id"])

    def update(self, name: str, annotation_id: int, seed: int, variant: int) -> None:
        time.sleep(0.02)
        self.ls.update_annotation(
            annotation_id, plant(ResultBuilder(*self.sizes[name], seed=seed), variant)
        )

    def delete(self, path: str) -> None:
        url = f"{self.server.url}{path}"
        httpx.delete(url, headers=self.server.headers, timeout=60).raise_for_status()

    def run_jobs(self) -> None:
        queue = self.rt.dispatcher.queue
        SimpleWorker([queue], connection=self.rt.redis, serializer=SERIALIZER).work(burst=True)
        assert queue.failed_job_registry.count == 0

    def batch(self, step: str) -> tuple[bytes, dict[str, Any]]:
        """Label Studio's JSON export converted by the batch CLI: pickle bytes and sidecar."""
        folder = self.root / f"batch-{step}"
        folder.mkdir()
        export = folder / "export.json"
        export.write_bytes(self.ls.export(self.project, "JSON"))
        config = folder / "label_config.xml"
        config.write_text(self.ls.get_project(self.project)["label_config"])
        output = folder / "snapshot.pkl"
        report, _labels = run_convert(
            str(export), output, self.root / "images", config, None,
            self.rt.options, strict=False, show_progress=False,
        )  # fmt: skip
        assert not report.failures, report.failures
        return output.read_bytes(), json.loads((folder / "snapshot.meta.json").read_text())

    def env(self) -> dict[str, str]:
        """The environment the service's commands read their settings from."""
        settings = self.rt.settings
        return {
            "REDIS_URL": settings.redis_url,
            "LABEL_STUDIO_URL": str(settings.label_studio_url),
            "LABEL_STUDIO_API_KEY": str(settings.label_studio_api_key),
            "LS_PANOPTIC_QUEUE": settings.queue_name,
            "LS_PANOPTIC_KEY_PREFIX": settings.key_prefix,
        }

    def live(self, step: str) -> tuple[bytes, dict[str, Any]]:
        """The store's snapshot, written by ``ls-panoptic snapshot``."""
        output = self.root / f"live-{step}.pkl"
        args = ["--project", str(self.project), "--output", str(output)]
        outcome = CliRunner().invoke(snapshot, args, env=self.env(), catch_exceptions=False)
        assert outcome.exit_code == 0, outcome.output
        return output.read_bytes(), json.loads(output.with_suffix(".meta.json").read_text())

    def assert_store_equals_batch(self, step: str, expected: set[str]) -> None:
        live_bytes, live_meta = self.live(step)
        batch_bytes, batch_meta = self.batch(step)
        live, batch = pickle.loads(live_bytes), pickle.loads(batch_bytes)
        assert set(live) == set(batch) == expected
        for key, entry in batch.items():
            mask = live[key]["panoptic_mask"]
            assert mask.dtype == np.uint32 and mask.shape == entry["panoptic_mask"].shape, key
            assert mask.tobytes() == entry["panoptic_mask"].tobytes(), key
            assert live[key]["inst2class"] == entry["inst2class"], key
        assert live_meta["id2label"] == batch_meta["id2label"]
        assert live_bytes == batch_bytes  # bit for bit, entry order and dict order included


@pytest.fixture
def live_project(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[LiveProject]:
    """A fresh project with the five scene images uploaded (no annotations yet)."""
    images = make_images()
    project = int(ls_client.create_project(f"live sync {tmp_path.name}", LABEL_CONFIG)["id"])
    ls_client.import_files(project, {image.name: image.data for image in images})
    tasks = {image_key(t["data"]["image"]): t for t in ls_client.list_tasks(project)}
    (tmp_path / "images").mkdir()
    for image in images:
        (tmp_path / "images" / image.name).write_bytes(image.data)
    settings = Settings(
        redis_url=redis_url,
        label_studio_url=label_studio.url,
        label_studio_api_key=label_studio.token,
        queue_name="lsp-e2e",
        key_prefix=PREFIX,
    )
    with runtime.running(settings, connection=redis_client) as rt:
        yield LiveProject(
            ls_client, label_studio, rt, project,
            {name: int(task["id"]) for name, task in tasks.items()},
            {image.name: (image.width, image.height) for image in images}, tmp_path,
        )  # fmt: skip


ANNOTATED = {PNG, EXIF_JPEG, PLAIN_JPEG}
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(live: LiveProject, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic worker`` in a child process (rq's forking worker), stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_PANOPTIC_")}
    command = [sys.executable, "-c", "from cli.worker_cmd import worker; worker()"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env={**env, **live.env()}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()  # rq: warm shutdown
            process.wait(timeout=60)


def _annotate_all(live: LiveProject) -> dict[str, int]:
    """As in build_project: the PNG's older annotation updated last, a skipped annotation over
    the plain JPEG's usable one, a task with only a skipped one; returns annotation ids."""
    ids = {"png-first": live.annotate(PNG, 1, 0), "png-second": live.annotate(PNG, 2, 1)}
    live.update(PNG, ids["png-first"], 3, 2)
    ids["exif"] = live.annotate(EXIF_JPEG, 4, 1)
    ids["plain"] = live.annotate(PLAIN_JPEG, 5, 2)
    ids["plain-skipped"] = live.annotate(PLAIN_JPEG, 6, 0, skipped=True)
    ids["skipped-only"] = live.annotate(SKIPPED_ONLY, 7, 0, skipped=True)
    return ids


def test_events_keep_the_store_equal_to_a_batch_conversion(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    dispatcher = live.rt.dispatcher
    assert dispatcher.sync_tasks(live.project, live.tasks.values()) == 5  # TASKS_CREATED
    live.run_jobs()
    live.assert_store_equals_batch("created", ANNOTATED)

    live.update(EXIF_JPEG, ids["exif"], 8, 0)
    bursts = [dispatcher.sync_tasks(live.project, [live.tasks[EXIF_JPEG]]) for _ in range(1000)]
    assert sum(bursts) == 1  # 1000 ANNOTATION_UPDATED events: one job
    live.run_jobs()
    live.assert_store_equals_batch("updated", ANNOTATED)

    first = live.annotate(UNLABELED, 9, 1)  # ANNOTATION_CREATED
    dispatcher.sync_tasks(live.project, [live.tasks[UNLABELED]])
    live.run_jobs()
    live.assert_store_equals_batch("annotated", ANNOTATED | {UNLABELED})
    assert live.rt.store.task_for_annotation(first) == (live.project, live.tasks[UNLABELED])


def test_deleted_annotations_and_tasks_leave_the_store(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    dispatcher = live.rt.dispatcher
    dispatcher.sync_tasks(live.project, live.tasks.values())
    live.run_jobs()

    live.delete(f"/api/annotations/{ids['png-first']}/")  # the selected one: the other is next
    dispatcher.drop_annotations([ids["png-first"]])  # ANNOTATIONS_DELETED carries ids only
    live.run_jobs()
    live.assert_store_equals_batch("annotation-deleted", ANNOTATED)
    entry = live.rt.store.get_entry(live.project, live.tasks[PNG])
    assert entry is not None and entry.meta["annotation_id"] == ids["png-second"]

    live.delete(f"/api/tasks/{live.tasks[EXIF_JPEG]}/")
    dispatcher.drop_tasks(live.project, [live.tasks[EXIF_JPEG]])  # TASKS_DELETED
    live.delete(f"/api/tasks/{live.tasks[PLAIN_JPEG]}/")
    dispatcher.sync_tasks(live.project, [live.tasks[PLAIN_JPEG]])  # a late, stale event
    live.run_jobs()
    live.assert_store_equals_batch("tasks-deleted", {PNG})
    states = {s.task_id: s.status for s in live.rt.store.states(live.project)}
    assert states == {live.tasks[PNG]: "ok", live.tasks[SKIPPED_ONLY]: "empty",
                      live.tasks[UNLABELED]: "empty"}  # fmt: skip


def test_resync_repairs_lost_webhooks(live_project: LiveProject) -> None:
    live = live_project
    ids = _annotate_all(live)
    dispatcher = live.rt.dispatcher
    dispatcher.sync_tasks(live.project, live.tasks.values())
    live.run_jobs()

    live.update(PLAIN_JPEG, ids["plain"], 10, 1)  # none of these is enqueued: lost webhooks
    live.annotate(UNLABELED, 11, 2)
    live.delete(f"/api/tasks/{live.tasks[EXIF_JPEG]}/")
    live.run_jobs()
    stale = live.rt.store.get_entry(live.project, live.tasks[PLAIN_JPEG])
    assert stale is not None and live.rt.store.get_entry(live.project, live.tasks[EXIF_JPEG])

    with worker_process(live, live.root / "worker.log"):  # `ls-panoptic worker`, forking
        args = ["--project", str(live.project), "--wait", "--timeout", "120"]
        outcome = CliRunner().invoke(resync, args, env=live.env(), catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    assert "2 to sync (0 already pending), 1 dropped" in outcome.output
    live.assert_store_equals_batch("resynced", {PNG, PLAIN_JPEG, UNLABELED})
    repaired = live.rt.store.get_entry(live.project, live.tasks[PLAIN_JPEG])
    assert repaired is not None and repaired.source_updated_at > stale.source_updated_at
    summary = reconcile.resync(live.rt, live.project)
    assert (summary["to_sync"], summary["dropped"]) == (0, 0)  # now in agreement

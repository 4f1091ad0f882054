"""What the live-sync end-to-end tests share: a Label Studio project with the worker context on
it. (The test Redis is the ``redis_url`` / ``redis_client`` fixtures of ``tests/conftest.py``:
``LSP_TEST_REDIS_URL``, default DB 15, flushed around each test.)

- :class:`LiveProject`: one Label Studio project, its images on disk, and the check every test
  ends with: the store's snapshot (``ls-panoptic snapshot``) byte for byte against the batch
  conversion (``ls-panoptic convert``) of a fresh Label Studio export, the failures both
  sidecars list included.
- :func:`relabel` and :data:`UNLISTED_LABEL`: results whose labels the test draws, and a label
  outside every label config of these tests (an annotation carrying it fails to convert).
- :func:`service_settings`, :func:`served_settings`: the settings the tests run the service with
  (the latter for ``serve`` and ``worker`` as processes: random tokens, no periodic resync).
- :func:`run_resync`: ``ls-panoptic resync --wait``;
  :func:`assert_manifest_complete` (:meth:`LiveProject.assert_blobs_whole`): every manifest
  entry points at a whole, decodable blob.

The service's processes are in :mod:`tests.e2e._services`, the webhook relay Label Studio posts
to in :mod:`tests.e2e._relay`.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import redis
from click.testing import CliRunner
from PIL import Image

from cli.connect import connect
from cli.convert import run_convert
from cli.store_cmds import resync, snapshot
from devstack.labelstudio import LabelStudioServer
from worker import runtime
from worker._store_codec import BLOB_FIELDS, OPTIONAL_BLOB_FIELDS, decode_entry, text
from worker.jobqueue import drain
from worker.keys import Keys
from worker.settings import Settings

from ._services import service_env
from .build_project import LABEL_CONFIG
from .lsclient import LabelStudioClient
from .reference import image_key
from .scene import ResultBuilder, SceneImage
from .scene import plant_result as plant

__all__ = [
    "PREFIX",
    "UNLISTED_LABEL",
    "LiveProject",
    "assert_manifest_complete",
    "open_live_project",
    "relabel",
    "run_resync",
    "served_settings",
    "service_settings",
    "small_image",
]

PREFIX = "lspe2e"
QUEUE = "lsp-e2e"
#: a label outside every label config here: Label Studio's API stores it, converting it fails
UNLISTED_LABEL = "unlisted"


def relabel(result: list[dict[str, Any]], choose: Callable[[], str]) -> list[dict[str, Any]]:
    """``result`` with each labelled region's label replaced by ``choose()`` (in place)."""
    for item in result:
        kind = item["type"]
        if kind.endswith("labels") and kind in item["value"]:
            item["value"][kind] = [choose()]
    return result


@dataclass
class LiveProject:
    """One Label Studio project, its tasks by image name, and the worker context on it."""

    ls: LabelStudioClient
    server: LabelStudioServer
    rt: runtime.Runtime
    project: int
    root: Path
    tasks: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def upload(self, images: Sequence[SceneImage]) -> dict[str, int]:
        """Upload image files (one task each, ``TASKS_CREATED``); image name -> new task id."""
        self.ls.import_files(self.project, {image.name: image.data for image in images})
        for image in images:
            self.add_image(image)
        return self.refresh_tasks({image.name for image in images})

    def add_image(self, image: SceneImage) -> None:
        """Keep ``image`` for the batch conversion (which reads sizes and EXIF from it)."""
        (self.images_dir / image.name).write_bytes(image.data)
        self.sizes[image.name] = (image.width, image.height)

    def refresh_tasks(self, names: set[str]) -> dict[str, int]:
        """Task ids of the images ``names`` as Label Studio lists them now."""
        listed = {
            image_key(t["data"]["image"]): int(t["id"]) for t in self.ls.list_tasks(self.project)
        }
        found = {name: listed[name] for name in names}
        self.tasks.update(found)
        return found

    def annotate(
        self, name: str, seed: int, variant: int, skipped: bool = False, label: str | None = None
    ) -> int:
        """A new annotation of image ``name``; ``label``: every region's label."""
        time.sleep(0.02)  # Label Studio stamps with microseconds: keep updated_at ordered
        result = plant(ResultBuilder(*self.sizes[name], seed=seed), variant)
        if label is not None:
            relabel(result, lambda: label)
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

    def annotation_ids(self, task_id: int) -> list[int]:
        """The ids of the task's annotations (skipped ones included)."""
        url = f"{self.server.url}/api/tasks/{task_id}/annotations/"
        response = httpx.get(url, headers=self.server.headers, timeout=60)
        response.raise_for_status()
        return [int(annotation["id"]) for annotation in response.json()]

    def set_label_config(self, label_config: str) -> None:
        """PATCH the project's label config (Label Studio fires ``PROJECT_UPDATED``)."""
        url = f"{self.server.url}/api/projects/{self.project}"
        body = {"label_config": label_config}
        httpx.patch(url, json=body, headers=self.server.headers, timeout=60).raise_for_status()

    def run_jobs(self) -> None:
        queue = self.rt.dispatcher.queue
        drain([queue], self.rt.redis)
        assert queue.failed_job_registry.count == 0

    def batch(self, step: str, export_file: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
        """Label Studio's JSON export (or ``export_file``, another export of the project)
        converted by the batch CLI: pickle bytes and sidecar."""
        folder = self.root / f"batch-{step}"
        folder.mkdir()
        export = folder / "export.json"
        export.write_bytes(export_file or self.ls.export(self.project, "JSON"))
        config = folder / "label_config.xml"
        config.write_text(self.ls.get_project(self.project)["label_config"])
        output = folder / "snapshot.pkl"
        run_convert(
            str(export), output, self.images_dir, config, None,
            self.rt.options, strict=False, show_progress=False,
        )  # fmt: skip
        return output.read_bytes(), json.loads((folder / "snapshot.meta.json").read_text())

    def env(self) -> dict[str, str]:
        """The environment the service's commands read their settings from."""
        return service_env(self.rt.settings)

    def connect(self, url: str) -> None:
        """``ls-panoptic connect``: the project's webhook posts to ``url`` from now on."""
        args = ["--project", str(self.project), "--url", url]
        outcome = CliRunner().invoke(connect, args, env=self.env())
        assert outcome.exit_code == 0, outcome.output

    def live(self, step: str) -> tuple[bytes, dict[str, Any]]:
        """The store's snapshot, written by ``ls-panoptic snapshot``."""
        output = self.root / f"live-{step}.pkl"
        args = ["--project", str(self.project), "--output", str(output)]
        outcome = CliRunner().invoke(snapshot, args, env=self.env(), catch_exceptions=False)
        sidecar = json.loads(output.with_suffix(".meta.json").read_text())
        # as convert: 1 when some tasks failed (the others are written), else 0
        assert outcome.exit_code == (1 if sidecar["failures"] else 0), outcome.output
        return output.read_bytes(), sidecar

    def assert_store_equals_batch(
        self,
        step: str,
        expected: set[str] | None = None,
        export_file: bytes | None = None,
        failed: frozenset[str] | None = frozenset(),
    ) -> dict[str, Any]:
        """The store's snapshot is the batch conversion (of a fresh JSON export, or of
        ``export_file``), bit for bit (and holds ``expected``), and both sidecars list the same
        failures: those of the images ``failed`` (``None``: any failures). Returns the store's
        sidecar."""
        live_bytes, live_meta = self.live(step)
        batch_bytes, batch_meta = self.batch(step, export_file)
        live, batch = pickle.loads(live_bytes), pickle.loads(batch_bytes)
        assert set(live) == set(batch), f"store {sorted(live)} != batch {sorted(batch)}"
        assert expected is None or set(batch) == expected
        for key, entry in batch.items():
            mask = live[key]["panoptic_mask"]
            assert mask.dtype == np.uint32 and mask.shape == entry["panoptic_mask"].shape, key
            assert mask.tobytes() == entry["panoptic_mask"].tobytes(), key
            assert live[key]["inst2class"] == entry["inst2class"], key
        assert live_meta["id2label"] == batch_meta["id2label"]
        assert live_bytes == batch_bytes  # bit for bit, entry order and dict order included
        assert live_meta["failures"] == batch_meta["failures"]  # task, key and reason alike
        assert failed is None or {f["key"] for f in batch_meta["failures"]} == failed
        return live_meta

    def assert_blobs_whole(self) -> None:
        """No entry half-written: the manifest points at whole blobs only."""
        keys = Keys(self.rt.settings.key_prefix)
        assert_manifest_complete(self.rt.redis, keys, self.project)


@contextmanager
def open_live_project(
    server: LabelStudioServer,
    ls_client: LabelStudioClient,
    settings: Settings,
    connection: redis.Redis,
    root: Path,
    title: str,
) -> Iterator[LiveProject]:
    """A new, empty project (``LABEL_CONFIG``) and the worker context of ``settings`` on it."""
    project = int(ls_client.create_project(title, LABEL_CONFIG)["id"])
    (root / "images").mkdir(parents=True)
    with runtime.running(settings, connection=connection) as rt:
        yield LiveProject(ls_client, server, rt, project, root)


def service_settings(redis_url: str, server: LabelStudioServer, **overrides: Any) -> Settings:
    """The settings every live-sync test runs the service with."""
    return Settings(
        redis_url=redis_url,
        label_studio_url=server.url,
        label_studio_api_key=server.token,
        queue_name=QUEUE,
        key_prefix=PREFIX,
        **overrides,
    )


def served_settings(redis_url: str, server: LabelStudioServer, **overrides: Any) -> Settings:
    """The settings of a test that runs ``serve`` and ``worker`` as processes: random webhook
    and API tokens, and no periodic resync (only the test's own resync may repair a lost
    event)."""
    return service_settings(
        redis_url, server, webhook_token=secrets.token_hex(16), api_token=secrets.token_hex(16),
        resync_interval=0.0, **overrides,
    )  # fmt: skip


def small_image(name: str, width: int, height: int, seed: int) -> SceneImage:
    """A PNG of random pixels, displayed ``width`` x ``height``."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return SceneImage(name, buffer.getvalue(), width, height)


def run_resync(live: LiveProject, timeout: float = 120.0) -> str:
    """``ls-panoptic resync --project P --wait``; its output (asserted successful)."""
    args = ["--project", str(live.project), "--wait", "--timeout", str(timeout)]
    outcome = CliRunner().invoke(resync, args, env=live.env(), catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


def assert_manifest_complete(connection: redis.Redis, keys: Keys, project: int) -> int:
    """Every manifest entry points at a blob holding every field, whose content hashes to its
    version, and which decodes; returns how many entries were checked."""
    manifest = connection.hgetall(keys.manifest(project))
    for task, raw_version in manifest.items():
        version = str(text(raw_version))
        where = keys.blob(project, int(task), version)
        fields = cast("dict[bytes, bytes]", connection.hgetall(where))  # a bytes client
        missing = [name for name in BLOB_FIELDS if name.encode() not in fields]
        assert not missing, f"{where}: missing fields {missing}"
        digest = hashlib.blake2b(digest_size=16)
        present = [name for name in OPTIONAL_BLOB_FIELDS if name.encode() in fields]
        for name in (*BLOB_FIELDS, *present):
            digest.update(fields[name.encode()])
            digest.update(b"\0")
        assert digest.hexdigest() == version, f"{where}: content does not hash to its version"
        decode_entry(where, fields)
    return len(manifest)

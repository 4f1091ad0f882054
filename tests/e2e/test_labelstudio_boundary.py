"""worker.labelstudio against a real Label Studio 1.23.2: reads, errors, images, webhooks.

Throwaway HTTP servers on 127.0.0.1 stand in for "another host" (which must never see the API
key) and for the backend that receives Label Studio's webhook calls.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from click.testing import CliRunner

from cli.connect import connect
from devstack.labelstudio import LabelStudioServer
from worker.labelstudio import (
    WEBHOOK_ACTIONS,
    ImageNotAllowed,
    LabelStudio,
    LabelStudioAuthError,
    LabelStudioNotFound,
    LabelStudioUnavailable,
)

from ._services import backend_process, free_port, service_env
from ._sync_helpers import served_settings
from .lsclient import LabelStudioClient
from .scene import EXIF_JPEG, ResultBuilder, make_images

pytestmark = pytest.mark.e2e

CONFIG = """<View><Image name="image" value="$image"/>
<RectangleLabels name="rect" toName="image"><Label value="leaf"/></RectangleLabels></View>"""


@dataclass
class Recorder:
    """A local HTTP server that records every request; ``reply`` decides the answer."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: Callable[[str], tuple[int, dict[str, str], bytes]] = lambda path: (200, {}, b"")

    def posts(self, action: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["body"] and r["body"].get("action") == action]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder("")

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, headers, content = rec.reply(self.path)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _record

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
    thread.join()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rect(builder: ResultBuilder, x: float = 0.1) -> list[dict[str, Any]]:
    return [builder.rectangle("leaf", (x, 0.1, 0.3, 0.3), 0.0)]


@pytest.fixture
def ls(label_studio: LabelStudioServer) -> Iterator[LabelStudio]:
    with LabelStudio(label_studio.url, label_studio.token) as client:
        yield client


@dataclass(frozen=True)
class ExifTask:
    """A project holding the uploaded EXIF JPEG (stored 640x480, displayed 480x640), annotated."""

    project_id: int
    task: dict[str, Any]
    annotation: dict[str, Any]

    @property
    def image_url(self) -> str:
        return str(self.task["data"]["image"])


@pytest.fixture
def exif_task(ls_client: LabelStudioClient) -> ExifTask:
    project_id = int(ls_client.create_project("boundary", CONFIG)["id"])
    image = next(i for i in make_images() if i.name == EXIF_JPEG)
    ls_client.import_files(project_id, {image.name: image.data})
    (task,) = ls_client.list_tasks(project_id)
    annotation = ls_client.create_annotation(task["id"], _rect(ResultBuilder(480, 640, seed=1)))
    return ExifTask(project_id, task, annotation)


def test_get_project_and_task(ls: LabelStudio, exif_task: ExifTask) -> None:
    project = ls.get_project(exif_task.project_id)
    assert (project.id, project.title) == (exif_task.project_id, "boundary")
    assert project.label_config == CONFIG
    owner, task = ls.get_task(exif_task.task["id"])
    assert (owner, task.id) == (exif_task.project_id, exif_task.task["id"])
    assert dict(task.data) == {"image": exif_task.image_url}  # as stored: /data/upload/...
    (annotation,) = task.annotations
    expected = exif_task.annotation
    assert isinstance(expected["completed_by"], int)  # the SDK gives a user object instead
    assert (annotation.id, annotation.completed_by) == (expected["id"], expected["completed_by"])
    assert annotation.updated_at == expected["updated_at"]
    assert annotation.result == expected["result"] and not annotation.was_cancelled


def test_list_tasks_pages_by_id(ls: LabelStudio, ls_client: LabelStudioClient) -> None:
    project_id = int(ls_client.create_project("paging", CONFIG)["id"])
    builder = ResultBuilder(64, 48, seed=2)
    urls = [f"/data/upload/{project_id}/0000{i:04x}-img{i}.png" for i in range(205)]
    records: list[dict[str, Any]] = [
        {"data": {"image": url}, "annotations": [{"result": _rect(builder)}] if i % 2 else []}
        for i, url in enumerate(urls)  # three pages of 100
    ]
    ls_client.import_tasks(project_id, records)
    tasks = list(ls.list_tasks(project_id))
    assert [t.data["image"] for t in tasks] == urls
    assert [len(t.annotations) for t in tasks] == [i % 2 for i in range(205)]
    ids = [t.id for t in tasks if t.id is not None]
    assert ids == sorted(ids) and len(set(ids)) == 205


def test_list_tasks_survives_deletes_while_paging(
    label_studio: LabelStudioServer, ls_client: LabelStudioClient
) -> None:
    project_id = int(ls_client.create_project("paging-deletes", CONFIG)["id"])
    ls_client.import_tasks(project_id, [{"data": {"image": f"/x/{i}.png"}} for i in range(7)])
    with LabelStudio(label_studio.url, label_studio.token, page_size=2) as ls:
        listing = ls.list_tasks(project_id)
        first, second = next(listing), next(listing)
        ls_client.delete_task(int(first.id or 0))  # page numbers would now skip a task
        rest = list(listing)
    assert [t.data["image"] for t in [first, second, *rest]] == [f"/x/{i}.png" for i in range(7)]


def test_missing_things_are_not_found(ls: LabelStudio) -> None:
    for call in (lambda: ls.get_project(987654), lambda: ls.get_task(987654)):
        with pytest.raises(LabelStudioNotFound, match="987654"):
            call()
    with pytest.raises(LabelStudioNotFound, match="No Project matches"):
        list(ls.list_tasks(987654))


def test_refused_keys_are_auth_errors(label_studio: LabelStudioServer) -> None:
    with (
        LabelStudio(label_studio.url, "not-a-key-0123") as ls,
        pytest.raises(LabelStudioAuthError, match="LABEL_STUDIO_API_KEY") as caught,
    ):
        ls.get_project(1)
    assert "not-a-key-0123" not in str(caught.value)
    claims = {"token_type": "refresh", "exp": int(time.time()) - 60, "user_id": "1"}
    expired = jwt.encode(claims, "x" * 32, algorithm="HS256")
    with pytest.raises(LabelStudioAuthError, match="expired") as caught:
        LabelStudio(label_studio.url, expired)
    assert expired not in str(caught.value)


def test_personal_access_token(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    exif_task: ExifTask,
    tmp_path: Path,
) -> None:
    with LabelStudio(label_studio.url, ls_client.create_personal_access_token()) as ls:
        assert ls.get_project(exif_task.project_id).id == exif_task.project_id
        info = ls.image_info(exif_task.image_url, tmp_path)
    assert info is not None and (info.width, info.height) == (480, 640)


def test_unreachable_label_studio_is_unavailable() -> None:
    with (
        LabelStudio(f"http://127.0.0.1:{_closed_port()}", "key", timeout=2.0) as ls,
        pytest.raises(LabelStudioUnavailable, match="cannot reach"),
    ):
        ls.get_task(1)


def test_image_from_label_studio_has_display_size(
    ls: LabelStudio, exif_task: ExifTask, tmp_path: Path
) -> None:
    info = ls.image_info(exif_task.image_url, tmp_path)
    assert info is not None
    assert (info.width, info.height, info.orientation) == (480, 640, 6)  # stored 640x480
    assert info.path.parent == tmp_path and info.path.stat().st_size > 0
    assert ls.image_info("data:image/png;base64,iVBORw0KGgo=", tmp_path) is None


def test_images_elsewhere_never_get_the_key(
    label_studio: LabelStudioServer, recorder: Recorder, tmp_path: Path
) -> None:
    port = recorder.url.rsplit(":", 1)[1]
    with LabelStudio(label_studio.url, label_studio.token) as ls:
        for url in (f"{recorder.url}/x.jpg", f"//127.0.0.1:{port}/x.jpg", "s3://b/x.jpg"):
            with pytest.raises(ImageNotAllowed, match="never sent elsewhere"):
                ls.image_info(url, tmp_path)
    assert recorder.requests == []


def test_redirects_off_label_studio_drop_the_key(recorder: Recorder, tmp_path: Path) -> None:
    """A stand-in Label Studio redirects to another origin (as for a presigned bucket URL)."""
    image = next(i for i in make_images() if i.name == EXIF_JPEG)
    elsewhere = recorder.url.replace("127.0.0.1", "localhost")  # another origin, same server
    recorder.reply = lambda path: (
        (302, {"Location": f"{elsewhere}/bucket/x.jpg"}, b"")
        if path.startswith("/data/")
        else (200, {"Content-Type": "image/jpeg"}, image.data)
    )
    with LabelStudio(recorder.url, "the-api-key") as ls:
        info = ls.image_info("/data/upload/1/0123abcd-x.jpg", tmp_path)
    assert info is not None and (info.width, info.height) == (480, 640)
    first, second = recorder.requests
    assert first["headers"]["Authorization"] == "Token the-api-key"
    assert second["path"] == "/bucket/x.jpg" and "Authorization" not in second["headers"]


def test_images_dir_is_read_locally_and_never_left(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    image = next(i for i in make_images() if i.name == EXIF_JPEG)
    (images / "sub" / "x.jpg").write_bytes(image.data)
    (tmp_path / "secret.jpg").write_bytes(image.data)
    (images / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    # Label Studio is unreachable: whatever works here was read from the folder
    url = f"http://127.0.0.1:{_closed_port()}"
    with LabelStudio(url, "key", images_dir=images) as ls:
        info = ls.image_info("/data/local-files/?d=sub/x.jpg", tmp_path / "scratch")
        assert info is not None and info.path == images / "sub" / "x.jpg"
        assert (info.width, info.height) == (480, 640)
        for bad in ("/data/local-files/?d=../../etc/passwd", "/data/local-files/?d=link.jpg"):
            with pytest.raises(ImageNotAllowed, match="outside LS_PANOPTIC_IMAGES_DIR"):
                ls.image_info(bad, tmp_path / "scratch")
        with pytest.raises(LabelStudioUnavailable):  # not in the folder: Label Studio's
            ls.image_info("/data/upload/1/0123abcd-missing.jpg", tmp_path / "scratch")


def test_connect_registers_one_webhook_that_label_studio_calls(
    label_studio: LabelStudioServer, ls_client: LabelStudioClient, recorder: Recorder
) -> None:
    project_id = int(ls_client.create_project("connect", CONFIG)["id"])
    ls_client.import_tasks(project_id, [{"data": {"image": "/x/a.png"}}])
    (task,) = ls_client.list_tasks(project_id)
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "WEBHOOK_TOKEN": "hook-secret",
    }
    args = ["--project", str(project_id), "--url", recorder.url]
    runner = CliRunner()
    outputs = [runner.invoke(connect, args, env=env) for _ in range(2)]
    assert [r.exit_code for r in outputs] == [0, 0], [r.output for r in outputs]
    assert outputs[0].output.startswith("created") and outputs[1].output.startswith("updated")
    assert label_studio.token not in outputs[0].output + outputs[1].output
    (hook,) = ls_client.webhooks(project_id)
    assert hook["url"] == f"{recorder.url}/webhook" and hook["send_payload"] is True
    assert sorted(hook["actions"]) == sorted(WEBHOOK_ACTIONS) and hook["is_active"] is True

    annotation = ls_client.create_annotation(task["id"], _rect(ResultBuilder(64, 48, seed=3)))
    (post,) = recorder.posts("ANNOTATION_CREATED")
    assert post["path"] == "/webhook"
    assert post["headers"]["Authorization"] == "Bearer hook-secret"
    assert post["body"]["annotation"]["id"] == annotation["id"]
    assert post["body"]["task"]["id"] == task["id"] and post["body"]["project"]["id"] == project_id

    # the recorder is no ls-panoptic backend: delivery is not checked, nothing is updated
    assert "delivery not checked" in outputs[0].output
    assert recorder.posts("PROJECT_UPDATED") == []

    moved = runner.invoke(connect, [*args[:3], f"{recorder.url}/v2"], env=env)
    assert moved.exit_code == 0 and moved.output.startswith("updated"), moved.output
    (hook,) = ls_client.webhooks(project_id)
    assert hook["url"] == f"{recorder.url}/v2/webhook"


@pytest.mark.parametrize("same_token", [True, False])
def test_connect_checks_that_label_studio_delivers_to_the_backend(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    same_token: bool,
) -> None:
    """A real backend: Label Studio's test event is counted, so connect says delivery works;
    with another WEBHOOK_TOKEN in the backend (its answer 401), connect exits 1 naming causes."""
    project_id = int(ls_client.create_project("delivery", CONFIG)["id"])
    settings = served_settings(redis_url, label_studio)
    backend_token = settings.webhook_token if same_token else "another-token"
    port = free_port()
    env = {**service_env(settings), "WEBHOOK_TOKEN": settings.webhook_token}
    backend_env = {"WEBHOOK_TOKEN": backend_token}
    with backend_process(settings, port, tmp_path / "backend.log", backend_env):
        args = ["--project", str(project_id), "--url", f"http://127.0.0.1:{port}"]
        outcome = CliRunner().invoke(connect, args, env=env)
    if same_token:
        assert outcome.exit_code == 0, outcome.output
        assert "delivery checked" in outcome.output
    else:
        assert outcome.exit_code == 1, outcome.output
        said = " ".join(outcome.output.split())
        assert "did not deliver its test event" in said and "WEBHOOK_TOKEN" in said
        assert "127.0.0.1 is a private or loopback address" in said
        assert "SSRF_PROTECTION_ENABLED=false" in said
    (hook,) = ls_client.webhooks(project_id)  # registered either way
    assert hook["url"] == f"http://127.0.0.1:{port}/webhook"

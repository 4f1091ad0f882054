"""Security properties of the service (real Redis; the real ``ls-panoptic serve`` where it says).

- Tokens are compared with ``hmac.compare_digest``, and its answer alone decides.
- The service fails closed: no app, and no ``serve``, without both tokens (outside dev mode).
- Nothing read from Redis is unpickled: pickles that would create a file when loaded, planted
  in job data, job results, store blobs, state records, the project record and the annotation
  index, are never loaded by the jobs, the API, ``/metrics`` or the dashboard.
- The dashboard (``/rq``) needs ``API_TOKEN`` on every one of its routes.
- Logs (the app's, and ``serve``'s under gunicorn) carry no token and no request body, not even
  for malformed requests that carry secrets.

Covered elsewhere, not repeated here: the Label Studio API key is never sent to another host,
and a local image folder is never left (``tests/e2e/test_labelstudio_boundary.py``).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
import pickle
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler

from backend.app import DEFAULT_MAX_CONTENT_LENGTH, create_app
from cli import worker_cmd
from devstack.supervisor import free_port, http_ok, port_answers, spawn
from ls_panoptic.images import ImageInfo
from ls_panoptic.model import Entry, Task
from ls_panoptic.tasks import task_from_dict
from tests.service import (
    API,
    API_TOKEN,
    HOOK,
    WEBHOOK_TOKEN,
    assert_json_error,
    basic,
    bearer,
)
from worker import runtime
from worker.dispatcher import Dispatcher
from worker.jobqueue import SERIALIZER, drain
from worker.keys import Keys
from worker.labelstudio import LabelStudioNotFound, ProjectInfo
from worker.settings import Settings, SettingsError
from worker.store import Store

LS_CLI = Path(sys.executable).with_name("ls-panoptic")
PROJECT = 3
CONFIG = '<View><Image name="image" value="$image"/><PolygonLabels name="p" toName="image">' \
    '<Label value="leaf"/></PolygonLabels></View>'  # fmt: skip
ID2LABEL = {0: "leaf", 1: "background"}
STAMP = "2026-01-05T10:00:00+00:00"


# -- constant-time comparison -----------------------------------------------------------------

# (method, path, credentials, accepted status)
AUTHENTICATED: list[tuple[str, str, dict[str, str], int]] = [
    ("POST", "/webhook", HOOK, 200),
    ("POST", "/webhook", basic(WEBHOOK_TOKEN), 200),
    ("POST", "/setup", basic(WEBHOOK_TOKEN), 200),
    ("POST", "/predict", HOOK, 200),
    ("GET", f"/projects/{PROJECT}/entries", API, 404),  # unknown project, past the guard
    ("POST", f"/projects/{PROJECT}/resync", API, 202),
    ("GET", "/rq/", basic(API_TOKEN), 200),
    ("GET", "/rq/0/data/queues.json", API, 200),
]


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every ``hmac.compare_digest`` call of ``backend.auth``, still answered by the real one."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("backend.auth.hmac.compare_digest", recording)
    return calls


def _wrong(headers: dict[str, str]) -> dict[str, str]:
    value = headers["Authorization"]
    if value.startswith("Bearer "):
        return bearer(value.removeprefix("Bearer ") + "x")
    return basic(API_TOKEN + "x" if API_TOKEN in _password(value) else WEBHOOK_TOKEN + "x")


def _password(basic_header: str) -> str:
    return base64.b64decode(basic_header.removeprefix("Basic ")).decode().partition(":")[2]


@pytest.mark.parametrize(("method", "path", "headers", "status"), AUTHENTICATED)
def test_tokens_are_compared_in_constant_time(
    client: FlaskClient,
    compare_calls: list[tuple[bytes, bytes]],
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
) -> None:
    body = {"action": "NOT_HANDLED"} if path == "/webhook" else {}
    token = (WEBHOOK_TOKEN if path in ("/webhook", "/setup", "/predict") else API_TOKEN).encode()

    assert client.open(path, method=method, headers=headers, json=body).status_code == status
    assert compare_calls == [(token, token)]
    compare_calls.clear()
    wrong = _wrong(headers)
    assert client.open(path, method=method, headers=wrong, json=body).status_code == 401
    presented = wrong["Authorization"].removeprefix("Bearer ").encode()
    if wrong["Authorization"].startswith("Basic "):
        presented = _password(wrong["Authorization"]).encode()
    assert compare_calls == [(presented, token)]


@pytest.mark.parametrize("verdict", [True, False])
def test_compare_digest_alone_decides(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, verdict: bool
) -> None:
    """Patched to always say yes, wrong tokens pass; always no, right ones fail: no other
    comparison (``==``, a prefix check, a cache) takes part."""
    monkeypatch.setattr("backend.auth.hmac.compare_digest", lambda _a, _b: verdict)
    for method, path, headers, status in AUTHENTICATED:
        body = {"action": "NOT_HANDLED"} if path == "/webhook" else {}
        sent = headers if not verdict else _wrong(headers)
        answer = client.open(path, method=method, headers=sent, json=body)
        assert answer.status_code == (status if verdict else 401), (path, answer.data[:200])


# -- failing closed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tokens",
    [
        {"webhook_token": "", "api_token": ""},
        {"webhook_token": "", "api_token": API_TOKEN},
        {"webhook_token": WEBHOOK_TOKEN, "api_token": ""},
        {"webhook_token": WEBHOOK_TOKEN, "api_token": None, "dev_mode": False},
    ],
)
def test_create_app_refuses_to_build_without_both_tokens(
    redis_url: str, redis_client: redis.Redis, tokens: dict[str, Any]
) -> None:
    with pytest.raises(SettingsError, match="must be set") as info:
        create_app(Settings(redis_url=redis_url, **tokens), redis_client)
    assert WEBHOOK_TOKEN not in str(info.value) and API_TOKEN not in str(info.value)


def test_blank_tokens_in_the_environment_count_as_unset(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = Settings.from_env({"REDIS_URL": redis_url, "WEBHOOK_TOKEN": "  ", "API_TOKEN": "\t"})
    with pytest.raises(SettingsError, match="WEBHOOK_TOKEN and API_TOKEN must be set"):
        create_app(settings, redis_client)


def serve_env(redis_url: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    """A clean environment for ``ls-panoptic serve`` (no stray LS_PANOPTIC_* of the caller)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": redis_url,
        "LS_PANOPTIC_SNAPSHOT_DIR": str(tmp_path / "snapshots"),
        **variables,
    }


SERVE_WITHOUT_TOKENS: dict[str, tuple[dict[str, str], str]] = {
    "none": ({}, "WEBHOOK_TOKEN and API_TOKEN must be set"),
    "one blank": (
        {"WEBHOOK_TOKEN": WEBHOOK_TOKEN, "API_TOKEN": " ", "LS_PANOPTIC_DEV": "0"},
        "API_TOKEN must be set",
    ),
}


@pytest.mark.parametrize("case", list(SERVE_WITHOUT_TOKENS))
def test_serve_exits_non_zero_with_one_clear_line(
    redis_url: str, tmp_path: Path, case: str
) -> None:
    """The real console script, as a container runs it (``CliRunner``: test_backend.py)."""
    variables, named = SERVE_WITHOUT_TOKENS[case]
    done = subprocess.run(
        [str(LS_CLI), "serve", "--port", "1"],
        env=serve_env(redis_url, tmp_path, **variables),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and named in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert WEBHOOK_TOKEN not in done.stderr and API_TOKEN not in done.stderr


# -- nothing from Redis is unpickled ----------------------------------------------------------


class _Bomb:
    """Unpickling it creates ``path`` (the marker): proof that something loaded a pickle."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


class _Tasks:
    """Label Studio for the jobs: one task with a sound polygon (the jobs must still work)."""

    def get_project(self, project_id: int) -> ProjectInfo:
        if project_id != PROJECT:
            raise LabelStudioNotFound(f"project {project_id}")
        return ProjectInfo(PROJECT, CONFIG, "stub")

    def get_task(self, task_id: int) -> tuple[int, Task]:
        value = {"points": [[10, 10], [60, 15], [40, 70]], "polygonlabels": ["leaf"]}
        result = [{"id": "r1", "type": "polygonlabels", "original_width": 8,
                   "original_height": 6, "value": value}]  # fmt: skip
        raw = {"id": task_id, "data": {"image": f"/data/upload/3/0123abcd-img{task_id}.jpg"},
               "annotations": [{"id": 900 + task_id, "result": result}]}  # fmt: skip
        return PROJECT, task_from_dict(raw)

    def list_tasks(self, project_id: int) -> Iterator[Task]:
        yield from (self.get_task(task_id)[1] for task_id in (11, 12))

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None:
        raise AssertionError("regions give the size")


@pytest.fixture
def stub() -> _Tasks:
    """Label Studio for the shared ``rt`` fixture (tests/conftest.py)."""
    return _Tasks()


def plant_bombs(client: redis.Redis, settings: Settings, bomb: bytes) -> str:
    """A store and a queue with pickles where the service keeps JSON, zstd and text; the id of
    the job whose call (``data``) is a pickle. (A pickled ``meta``: see the tests below.)"""
    keys, store = Keys(settings.key_prefix), Store(client, Keys(settings.key_prefix))
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    for task_id in (11, 12):
        entry = Entry(f"img{task_id}.jpg", np.ones((6, 8), np.uint32), {1: 1}, {"t": task_id})
        store.put_entry(PROJECT, task_id, entry, STAMP)
    version = client.hget(keys.manifest(PROJECT), "12")
    blob = keys.blob(PROJECT, 12, version.decode() if isinstance(version, bytes) else "")
    client.hset(blob, mapping={"mask": bomb, "inst2class": bomb, "meta": bomb})
    client.hset(keys.states(PROJECT), "13", bomb)  # a state record
    client.hset(keys.annotations(), mapping={"913": bomb, "914": zlib.compress(bomb)})
    client.hset(keys.events(), "ANNOTATION_CREATED", bomb)

    planted = Dispatcher(client, settings).drop_tasks(PROJECT, [99])
    client.hset(Job.key_for(str(planted)), "data", zlib.compress(bomb))
    return str(planted)


def plant_result(client: redis.Redis, job_id: str, bomb: bytes) -> None:
    """A newer result of a finished job: its return value a pickle (rq base64-encodes it)."""
    value = base64.b64encode(bomb).decode()
    client.xadd(f"rq:results:{job_id}", {"type": 1, "return_value": value, "worker_name": "w"})


def test_pickles_planted_in_redis_are_never_loaded(
    app: Flask,
    client: FlaskClient,
    redis_client: redis.Redis,
    settings: Settings,
    rt: runtime.Runtime,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "unpickled"
    bomb = pickle.dumps(_Bomb(marker))
    planted = plant_bombs(redis_client, settings, bomb)
    # the jobs: a sync, the planted one, a resync, index lookups
    honest = rt.dispatcher.enqueue_sync(PROJECT, 11)
    others = [rt.dispatcher.drop_annotations([913, 914, 5]), rt.dispatcher.resync_project(3)]
    drain([rt.dispatcher.queue], redis_client)
    assert not marker.exists()
    refused = Job.fetch(planted, redis_client, SERIALIZER).get_status()
    assert refused in (JobStatus.FAILED, JobStatus.SCHEDULED)  # never run: failed, or retried
    assert Job.fetch(str(honest), redis_client, SERIALIZER).get_status() == JobStatus.FINISHED
    assert rt.store.get_entry(PROJECT, 11) is not None
    for job_id in others:  # ran, and failed on the corrupt records (no pickle loaded): retried
        status = Job.fetch(str(job_id), redis_client, SERIALIZER).get_status()
        assert status in (JobStatus.FINISHED, JobStatus.SCHEDULED, JobStatus.FAILED)
    plant_result(redis_client, str(honest), bomb)

    for path in (
        f"/projects/{PROJECT}/snapshot.pkl",
        f"/projects/{PROJECT}/snapshot.meta.json",
        f"/projects/{PROJECT}/entries",
        "/metrics",
        "/rq/0/data/queues.json",
        f"/rq/0/data/jobs/{settings.queue_name}/failed/8/asc/1.json",
        f"/rq/0/data/jobs/{settings.queue_name}/finished/8/asc/1.json",
        f"/rq/0/data/job/{planted}.json",
        f"/rq/0/data/job/{honest}.json",
        f"/rq/0/view/job/{planted}",
    ):
        answer = client.get(path, headers=API)
        assert not marker.exists(), path
        if answer.status_code >= 500:  # fails cleanly: the JSON error, nothing of the payload
            assert_json_error(answer, "GET")
        answer.close()

    pickle.loads(bomb)  # control: the payload is live, and only this test loaded it
    assert marker.exists()


def _simple_worker(rt: runtime.Runtime) -> None:
    queue = rt.dispatcher.queue
    drain([queue], rt.redis)


def _worker_command(rt: runtime.Runtime) -> None:  # ``ls-panoptic worker``: rq's forking worker
    worker_cmd._work(rt, burst=True, with_scheduler=False)


@pytest.mark.parametrize("work", [_simple_worker, _worker_command])
def test_a_job_with_pickled_data_and_meta_does_not_stop_the_worker(
    redis_client: redis.Redis,
    rt: runtime.Runtime,
    tmp_path: Path,
    work: Callable[[runtime.Runtime], None],
) -> None:
    """rq reads a meta it cannot load as ``{"unserialized": <bytes>}`` and, retrying the failed
    job, saved that back as JSON: it raised inside rq's failure handling and the worker quit.
    ``worker.jobqueue.JobSerializer`` saves it as ``{}``."""
    bomb = pickle.dumps(_Bomb(tmp_path / "unpickled"))
    planted = rt.dispatcher.drop_tasks(PROJECT, [99])
    redis_client.hset(
        Job.key_for(str(planted)), mapping={"data": zlib.compress(bomb), "meta": bomb}
    )
    honest = rt.dispatcher.drop_tasks(PROJECT, [98])
    work(rt)
    assert not (tmp_path / "unpickled").exists()
    assert Job.fetch(str(honest), redis_client, SERIALIZER).get_status() == JobStatus.FINISHED
    refused = Job.fetch(str(planted), redis_client, SERIALIZER)
    assert refused.get_status() == JobStatus.SCHEDULED  # failed, to be retried (and fail again)
    assert refused.meta == {} and redis_client.hget(refused.key, "meta") == b"{}"


def test_the_scheduler_enqueues_a_due_job_with_a_pickled_meta(
    redis_client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """rq's scheduler saves each due job it enqueues, its meta included (with rq's own Job
    class, whatever the worker's): the serializer is what it takes from the worker."""
    bomb = pickle.dumps(_Bomb(tmp_path / "unpickled"))
    dispatcher = Dispatcher(redis_client, settings)
    due = dispatcher.schedule_resync_all(60)
    assert due is not None
    redis_client.hset(Job.key_for(due), "meta", bomb)
    registry = dispatcher.queue.scheduled_job_registry
    redis_client.zadd(registry.key, {due: 0})  # due long ago

    scheduler = RQScheduler([dispatcher.queue], connection=redis_client, serializer=SERIALIZER)
    scheduler.prepare_registries([dispatcher.queue.name])
    scheduler.enqueue_scheduled_jobs()
    assert dispatcher.queue.get_job_ids() == [due]
    assert redis_client.hget(Job.key_for(due), "meta") == b"{}"
    assert not (tmp_path / "unpickled").exists()


# -- the dashboard needs API_TOKEN ------------------------------------------------------------

_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def dashboard_urls(app: Flask) -> Iterator[tuple[str, str]]:
    """(method, path) of every dashboard route, its arguments filled in."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/rq"):
            continue
        path = _ARGUMENT.sub(lambda m: "0" if m["converter"] == "int" else "ls-panoptic", rule.rule)
        for method in sorted(rule.methods or ()):
            yield method, path


NOT_THE_API_TOKEN: dict[str, dict[str, str]] = {
    "none": {},
    "wrong bearer": bearer("x"),
    "wrong basic": basic("x"),
    "webhook bearer": HOOK,
    "webhook basic": basic(WEBHOOK_TOKEN),
    "Token scheme": {"Authorization": f"Token {API_TOKEN}"},
    "cookie": {"Cookie": f"session={API_TOKEN}"},
}


@pytest.mark.parametrize("credentials", list(NOT_THE_API_TOKEN))
def test_every_dashboard_route_needs_the_api_token(
    app: Flask, client: FlaskClient, redis_client: redis.Redis, credentials: str
) -> None:
    headers = NOT_THE_API_TOKEN[credentials]
    urls = list(dashboard_urls(app))
    assert len(urls) > 30  # rq-dashboard's views, data endpoints and actions, all methods
    for method, path in urls:
        answer = client.open(path, method=method, headers=headers | {"Origin": "http://localhost"})
        assert answer.status_code == 401, (method, path)
        assert_json_error(answer, method)
    assert redis_client.dbsize() == 0  # not even a dashboard action got through


def test_a_doubled_slash_does_not_slip_past_the_dashboard_guard(client: FlaskClient) -> None:
    for path in ("//rq/", "//rq/0/data/queues.json", "/./rq/", "/rq/../rq/"):
        answer = client.get("/", environ_overrides={"PATH_INFO": path})
        assert answer.status_code in (301, 308, 401, 404), (path, answer.status_code)
        assert b"<html" not in answer.data and b"queues" not in answer.data


# -- logs -------------------------------------------------------------------------------------

MARKER = "PRIVATE-BODY-MARKER"
LS_ACCESS_TOKEN = "ls-access-token-SECRET"
SECRETS = (WEBHOOK_TOKEN, API_TOKEN, MARKER, LS_ACCESS_TOKEN)
Sender = Callable[..., Any]


def send_malformed_requests_with_secrets(send: Sender) -> None:
    """Requests that carry secrets in every place a log could pick them from."""
    leaky = {"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "task": 7, "x": MARKER},
             "project": PROJECT, "token": API_TOKEN}  # fmt: skip
    send("POST", "/webhook", headers=HOOK, content=json.dumps(leaky).encode())
    send("POST", "/webhook", headers=HOOK, content=f'{{"{MARKER}": "{API_TOKEN}"'.encode())
    send("POST", "/webhook", headers=HOOK, content=MARKER.encode() + b"\xff\xfe")
    send("POST", "/webhook", headers=bearer(f"{WEBHOOK_TOKEN}-{MARKER}"), content=b"{}")
    send("POST", "/webhook", headers=basic(WEBHOOK_TOKEN, user=MARKER), content=b"[1]")
    send("POST", "/webhook", headers={"Authorization": f"Basic {MARKER}\u00e9"}, content=b"{}")
    send("POST", "/webhook", headers=HOOK, content=b"x" * (DEFAULT_MAX_CONTENT_LENGTH + 1))
    send(
        "POST",
        "/setup",
        headers=basic(WEBHOOK_TOKEN),
        content=json.dumps({"project": MARKER, "access_token": LS_ACCESS_TOKEN}).encode(),
    )
    send("GET", f"/projects/{PROJECT}/entries?api_token={API_TOKEN}&q={MARKER}", headers={})
    send("GET", f"/projects/{PROJECT}/entries", headers={"X-Api-Key": API_TOKEN,
                                                          "Cookie": f"s={MARKER}"})  # fmt: skip
    send("GET", "/rq/", headers=basic(MARKER))
    send("GET", "/metrics", headers={"Authorization": f"Bearer {API_TOKEN}"})


def test_app_logs_carry_no_token_and_no_body(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    def send(method: str, path: str, headers: dict[str, str], content: bytes = b"") -> None:
        client.open(path, method=method, headers=headers, data=content).close()

    with caplog.at_level(logging.DEBUG):
        send_malformed_requests_with_secrets(send)
    assert "request method=POST path=/webhook status=400" in caplog.text  # it does log
    assert "request method=GET path=/projects/3/entries status=401" in caplog.text
    for record in caplog.records:
        text = f"{record.getMessage()} {record.exc_text or ''}"
        for secret in SECRETS:
            assert secret not in text, (record.name, text)


@pytest.fixture
def served(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``ls-panoptic serve`` (gunicorn, one worker) on a free port; its base URL and log file."""
    port, log = free_port(), tmp_path / "serve.log"
    env = serve_env(redis_url, tmp_path, WEBHOOK_TOKEN=WEBHOOK_TOKEN, API_TOKEN=API_TOKEN)
    args = [str(LS_CLI), "serve", "--port", str(port), "--workers", "1", "--threads", "2"]
    process = spawn("serve", args, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        process.wait_ready(lambda: http_ok(base + "/health", timeout=1), "serve", timeout=30)
        yield base, log
    finally:
        process.stop()


def test_serve_logs_carry_no_token_and_no_body(served: tuple[str, Path]) -> None:
    base, log = served
    with httpx.Client(base_url=base, timeout=10) as http:

        def send(method: str, path: str, headers: dict[str, str], content: bytes = b"") -> None:
            raw = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
            http.request(method, path, headers=raw, content=content)

        send_malformed_requests_with_secrets(send)
    time.sleep(0.5)  # let the worker flush its log lines
    text = log.read_text(errors="replace")
    assert "serve settings:" in text and "'api_token': 'set'" in text
    assert "request method=POST path=/webhook status=202" in text
    assert "request method=POST path=/webhook status=413" in text
    assert "request method=GET path=/projects/3/entries status=401" in text
    for secret in SECRETS:
        assert secret not in text, secret
    assert base64.b64encode(f"label-studio:{WEBHOOK_TOKEN}".encode()).decode() not in text


def test_serve_dev_logs_no_query_strings(redis_url: str, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "dev.log"
    env = serve_env(redis_url, tmp_path, WEBHOOK_TOKEN=WEBHOOK_TOKEN, API_TOKEN=API_TOKEN)
    process = spawn("serve --dev", [str(LS_CLI), "serve", "--dev", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}/projects/3/entries?t={MARKER}"
    try:
        process.wait_ready(lambda: port_answers(port), "serve --dev", timeout=30)
        httpx.get(url, timeout=5)
        time.sleep(0.3)  # let the server write its request line
    finally:
        process.stop()
    assert "path=/projects/3/entries status=401" in log.read_text()
    assert MARKER not in log.read_text()

"""The Flask backend against a real Redis, through the shared fixtures of tests/conftest.py
(``settings``, ``app``, ``client``, ``store``: the test database, flushed around every test) and
the tokens and credentials of ``tests/service.py``.

What is checked is the effect, not only the status: the RQ jobs in the queue (function and
arguments, JSON-serialised), the annotation index in the store, the event counters in
``/metrics``, and snapshots made from entries put through the real ``Store`` and loaded back
with plain ``pickle.load``.
"""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from backend.app import DEFAULT_MAX_CONTENT_LENGTH, create_app
from backend.mlbackend import MODEL_CLASS, MODEL_VERSION
from cli import serve as serve_module
from ls_panoptic.model import Entry
from tests.service import API, API_TOKEN, HOOK, WEBHOOK_TOKEN, basic, bearer, enqueued
from worker.jobqueue import make_queue
from worker.keys import Keys
from worker.settings import Settings, SettingsError
from worker.store import Store

PROJECT = 3
CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="tag" toName="image"><Label value="leaf"/><Label value="stem"/>'
    "</BrushLabels></View>"
)
ID2LABEL = {0: "leaf", 1: "stem", 2: "background"}


# -- helpers ----------------------------------------------------------------------------------


def event_count(client: FlaskClient, action: str, handled: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    prefix = f'ls_panoptic_webhook_events_total{{action="{action}",handled="{handled}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def ls_project(project: int = PROJECT, label_config: str = CONFIG) -> dict[str, Any]:
    """The ``project`` object Label Studio 1.23 puts in every payload (abridged)."""
    return {"id": project, "title": "leaves", "label_config": label_config, "task_number": 4}


def ls_task(task_id: int, project: int = PROJECT) -> dict[str, Any]:
    return {
        "id": task_id,
        "data": {"image": f"/data/upload/{project}/1a2b3c4d-img{task_id}.jpg"},
        "project": project,
        "file_upload": 17,
        "is_labeled": True,
        "updated_at": "2026-01-05T10:00:00.000000Z",
    }


def ls_annotation(annotation_id: int, task_id: int, project: int = PROJECT) -> dict[str, Any]:
    return {
        "id": annotation_id,
        "result": [{"id": "r1", "type": "brushlabels", "value": {"format": "rle", "rle": [1]}}],
        "task": task_id,
        "project": project,
        "completed_by": 1,
        "was_cancelled": False,
        "ground_truth": False,
        "updated_at": "2026-01-05T10:00:00.000000Z",
    }


def annotation_event(action: str, annotation_id: int, task_id: int) -> dict[str, Any]:
    return {
        "action": action,
        "annotation": ls_annotation(annotation_id, task_id),
        "task": ls_task(task_id),
        "project": ls_project(),
    }


def put_entries(store: Store, seed: int = 7) -> dict[str, dict[str, Any]]:
    """Three converted entries through the real store; returns the expected snapshot dict."""
    rng = np.random.default_rng(seed)
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    expected: dict[str, dict[str, Any]] = {}
    for task_id, shape in {11: (5, 7), 12: (4, 6), 13: (3, 3)}.items():
        mask = rng.integers(1, 6, size=shape, dtype=np.uint32)
        if task_id == 13:
            mask[0, 0] = 70_000  # an id past uint16: stored without narrowing
        inst2class = {int(i): int(i) % 3 for i in np.unique(mask)}
        key = f"img{task_id}.jpg"
        meta = {"task_id": task_id, "annotation_id": 100 + task_id}
        entry = Entry(key, mask, inst2class, meta)
        assert store.put_entry(PROJECT, task_id, entry, "2026-01-05T10:00:00+00:00")
        expected[key] = {"panoptic_mask": mask.copy(), "inst2class": inst2class}
    return expected


# -- building the app -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("webhook_token", "api_token", "named"),
    [(None, API_TOKEN, "WEBHOOK_TOKEN"), (WEBHOOK_TOKEN, None, "API_TOKEN"), (None, None, "")],
)
def test_create_app_refuses_missing_tokens(
    webhook_token: str | None,
    api_token: str | None,
    named: str,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    settings = Settings(redis_url=redis_url, webhook_token=webhook_token, api_token=api_token)
    with pytest.raises(SettingsError, match=named or "WEBHOOK_TOKEN and API_TOKEN"):
        create_app(settings, redis_client)


def test_dev_mode_builds_without_tokens_and_lets_requests_in(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_url, dev_mode=True, snapshot_dir=tmp_path)
    client = create_app(settings, redis_client).test_client()
    answer = client.post("/webhook", json=annotation_event("ANNOTATION_CREATED", 5, 7))
    assert answer.status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.sync_task", [PROJECT, 7])]
    assert client.post(f"/projects/{PROJECT}/resync").status_code == 202


def test_dev_mode_still_checks_a_token_that_is_set(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, dev_mode=True, webhook_token=WEBHOOK_TOKEN)
    client = create_app(settings, redis_client).test_client()
    assert client.post("/webhook", json={"action": "X"}).status_code == 401
    assert client.get(f"/projects/{PROJECT}/entries").status_code == 404  # API open, unknown


# -- authentication ---------------------------------------------------------------------------

GUARDED = [
    ("POST", "/webhook"),
    ("POST", "/setup"),
    ("POST", "/predict"),
    ("GET", f"/projects/{PROJECT}/snapshot.pkl"),
    ("GET", f"/projects/{PROJECT}/snapshot.meta.json"),
    ("GET", f"/projects/{PROJECT}/entries"),
    ("POST", f"/projects/{PROJECT}/resync"),
    ("GET", "/rq/"),
    ("GET", "/rq/0/data/queues.json"),
]
BAD_CREDENTIALS = {
    "none": {},
    "wrong bearer": bearer("not-the-token"),
    "wrong basic": basic("not-the-token"),
    "empty bearer": {"Authorization": "Bearer "},
    "broken basic": {"Authorization": "Basic !!!not-base64"},
    "token scheme": {"Authorization": f"Token {WEBHOOK_TOKEN}"},
    "other token": bearer(API_TOKEN),  # right for the API, wrong for the webhook, and back
}


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize("credentials", list(BAD_CREDENTIALS))
def test_guarded_routes_refuse_bad_credentials(
    client: FlaskClient,
    redis_client: redis.Redis,
    settings: Settings,
    method: str,
    path: str,
    credentials: str,
) -> None:
    headers = dict(BAD_CREDENTIALS[credentials])
    if credentials == "other token" and not path.startswith(("/webhook", "/setup", "/predict")):
        headers = HOOK
    body = annotation_event("ANNOTATION_CREATED", 5, 7)
    answer = client.open(path, method=method, headers=headers, json=body)
    assert answer.status_code == 401
    assert answer.json is not None
    assert answer.json["error"] == "unauthorized"
    assert "credentials" in answer.json["message"]
    assert "WWW-Authenticate" in answer.headers
    assert WEBHOOK_TOKEN not in answer.get_data(as_text=True)
    assert API_TOKEN not in answer.get_data(as_text=True)
    assert enqueued(redis_client, settings) == []
    assert redis_client.hlen(Keys(settings.key_prefix).events()) == 0


def test_webhook_authenticates_before_reading_the_body(client: FlaskClient) -> None:
    # an unauthenticated client learns nothing about the body: not 400 (malformed), not 413
    assert client.post("/webhook", data=b"{not json").status_code == 401
    oversized = b"x" * (DEFAULT_MAX_CONTENT_LENGTH + 1)
    assert client.post("/webhook", data=oversized).status_code == 401


def test_webhook_accepts_basic_with_the_token_as_password(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    for headers in (basic(WEBHOOK_TOKEN), basic(WEBHOOK_TOKEN, user=""), HOOK):
        body = annotation_event("ANNOTATION_UPDATED", 5, 7)
        assert client.post("/webhook", headers=headers, json=body).status_code == 202
    # coalesced: three events for one task, one pending sync job
    assert enqueued(redis_client, settings) == [("worker.jobs.sync_task", [PROJECT, 7])]


def test_api_takes_bearer_only(client: FlaskClient) -> None:
    assert client.get(f"/projects/{PROJECT}/entries", headers=basic(API_TOKEN)).status_code == 401
    challenge = client.get(f"/projects/{PROJECT}/entries").headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")


# -- events -> work ---------------------------------------------------------------------------


def test_annotation_created_syncs_the_task_and_indexes_the_annotation(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, store: Store
) -> None:
    answer = client.post(
        "/webhook", headers=HOOK, json=annotation_event("ANNOTATION_CREATED", 5, 7)
    )
    assert answer.status_code == 202
    assert answer.json == {
        "status": "accepted", "action": "ANNOTATION_CREATED", "project": PROJECT,
        "tasks": [7], "enqueued": 1,
    }  # fmt: skip
    assert enqueued(redis_client, settings) == [("worker.jobs.sync_task", [PROJECT, 7])]
    assert store.task_for_annotation(5) == (PROJECT, 7)


def test_annotation_updated_is_coalesced_per_task(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, store: Store
) -> None:
    for annotation_id, task_id in [(5, 7), (5, 7), (6, 8), (5, 7)]:
        body = annotation_event("ANNOTATION_UPDATED", annotation_id, task_id)
        assert client.post("/webhook", headers=HOOK, json=body).status_code == 202
    assert enqueued(redis_client, settings) == [
        ("worker.jobs.sync_task", [PROJECT, 7]),
        ("worker.jobs.sync_task", [PROJECT, 8]),
    ]
    assert store.task_for_annotation(6) == (PROJECT, 8)


def test_annotation_event_falls_back_to_the_annotation_fields(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = {"action": "ANNOTATION_CREATED", "annotation": ls_annotation(5, 9, project=4)}
    assert client.post("/webhook", headers=HOOK, json=body).status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.sync_task", [4, 9])]


def test_annotations_created_takes_a_list(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, store: Store
) -> None:
    body = {
        "action": "ANNOTATIONS_CREATED",
        "annotation": [ls_annotation(21, 7), ls_annotation(22, 8), ls_annotation(23, 7)],
        "task": [ls_task(7), ls_task(8), ls_task(7)],
        "project": ls_project(),
    }
    answer = client.post("/webhook", headers=HOOK, json=body)
    assert answer.status_code == 202
    assert answer.json is not None and answer.json["tasks"] == [7, 8]
    assert enqueued(redis_client, settings) == [
        ("worker.jobs.sync_task", [PROJECT, 7]),
        ("worker.jobs.sync_task", [PROJECT, 8]),
    ]
    assert [store.task_for_annotation(a) for a in (21, 22, 23)] == [
        (PROJECT, 7), (PROJECT, 8), (PROJECT, 7),
    ]  # fmt: skip


def test_annotations_deleted_hands_the_ids_to_the_worker(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 5}, {"id": 6}],
            "project": ls_project()}  # fmt: skip
    assert client.post("/webhook", headers=HOOK, json=body).status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.drop_annotations", [[5, 6]])]


def test_tasks_created_syncs_them(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = {"action": "TASKS_CREATED", "tasks": [ls_task(7), ls_task(8)], "project": ls_project()}
    assert client.post("/webhook", headers=HOOK, json=body).status_code == 202
    assert enqueued(redis_client, settings) == [
        ("worker.jobs.sync_task", [PROJECT, 7]),
        ("worker.jobs.sync_task", [PROJECT, 8]),
    ]


def test_tasks_deleted_drops_them(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = {"action": "TASKS_DELETED", "tasks": [{"id": 7}, {"id": 8}], "project": ls_project()}
    assert client.post("/webhook", headers=HOOK, json=body).status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.drop_tasks", [PROJECT, [7, 8]])]


def test_project_updated_rebuilds_only_when_the_label_config_changed(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, store: Store
) -> None:
    event = {"action": "PROJECT_UPDATED", "project": ls_project()}
    unknown = client.post("/webhook", headers=HOOK, json=event)
    assert (unknown.status_code, unknown.json["status"]) == (200, "ignored")  # type: ignore[index]
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    same = client.post("/webhook", headers=HOOK, json=event)
    assert same.status_code == 200
    assert same.json is not None and same.json["reason"] == "label config unchanged"
    assert enqueued(redis_client, settings) == []

    renamed = {"action": "PROJECT_UPDATED", "project": ls_project(label_config=CONFIG + " ")}
    changed = client.post("/webhook", headers=HOOK, json=renamed)
    assert changed.status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.rebuild_project", [PROJECT])]
    job_id = changed.json["job_id"]  # type: ignore[index]
    assert make_queue(redis_client, settings.queue_name).get_job_ids() == [job_id]


def test_start_training_rebuilds(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    body = {"action": "START_TRAINING", "project": ls_project()}
    assert client.post("/webhook", headers=basic(WEBHOOK_TOKEN), json=body).status_code == 202
    assert enqueued(redis_client, settings) == [("worker.jobs.rebuild_project", [PROJECT])]


@pytest.mark.parametrize("action", ["LABEL_LINK_CREATED", "PROJECT_CREATED", "REVIEW_CREATED"])
def test_other_actions_are_ignored_and_counted(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, action: str
) -> None:
    for _ in range(2):
        answer = client.post("/webhook", headers=HOOK, json={"action": action, "project": {}})
        assert answer.status_code == 200
        assert answer.json is not None and answer.json["status"] == "ignored"
    assert enqueued(redis_client, settings) == []
    assert event_count(client, action, "false") == 2


def test_handled_events_are_counted_by_type(client: FlaskClient) -> None:
    client.post("/webhook", headers=HOOK, json=annotation_event("ANNOTATION_CREATED", 5, 7))
    client.post(
        "/webhook", headers=HOOK, json={"action": "START_TRAINING", "project": ls_project()}
    )
    assert event_count(client, "ANNOTATION_CREATED", "true") == 1
    assert event_count(client, "START_TRAINING", "true") == 1


# -- malformed bodies -------------------------------------------------------------------------

MALFORMED: dict[str, tuple[bytes | dict[str, Any] | list[Any], str]] = {
    "empty": (b"", "empty body"),
    "not json": (b'{"action": "ANNOTATION_CREATED",', "body is not valid JSON"),
    "not utf": (b"\xff\xfe\xfd\xfc{", "not valid JSON"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    "list": ([{"action": "TASKS_CREATED"}], "must be a JSON object, got list"),
    "no action": ({"project": {"id": 3}}, "'action' must be a non-empty string"),
    "action not a string": ({"action": 5}, "'action' must be a non-empty string"),
    "no payload": ({"action": "ANNOTATION_CREATED"}, "'annotation' must be an object"),
    "task id a string": (
        {**annotation_event("ANNOTATION_CREATED", 5, 7), "task": {"id": "7", "project": 3}},
        "'task.id' must be a positive integer id, got str",
    ),
    "annotation id missing": (
        {**annotation_event("ANNOTATION_UPDATED", 5, 7), "annotation": {"task": 7}},
        "'annotation.id' must be a positive integer id, got NoneType",
    ),
    "annotations not a list": (
        {"action": "ANNOTATIONS_CREATED", "annotation": ls_annotation(5, 7)},
        "ANNOTATIONS_CREATED: 'annotation' must be a list of objects",
    ),
    "annotation without task": (
        {"action": "ANNOTATIONS_CREATED", "annotation": [{"id": 5}], "project": ls_project()},
        "'annotation[0].task' must be a positive integer id",
    ),
    "deleted ids": (
        {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 5}, {"id": True}]},
        "'annotations[1].id' must be a positive integer id, got bool",
    ),
    "task without id": (
        {"action": "TASKS_DELETED", "tasks": [{"id": 7}, {}], "project": ls_project()},
        "TASKS_DELETED: 'tasks[1].id' must be a positive integer id",
    ),
    "tasks without project": (
        {"action": "TASKS_DELETED", "tasks": [{"id": 7}]},
        "TASKS_DELETED: no project id",
    ),
    "negative project": (
        {"action": "START_TRAINING", "project": {"id": -3}},
        "'project.id' must be a positive integer id",
    ),
    "config missing": (
        {"action": "PROJECT_UPDATED", "project": {"id": 3}},
        "'project.label_config' must be a string",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_bodies_are_400_naming_the_problem(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, case: str
) -> None:
    body, problem = MALFORMED[case]
    if isinstance(body, bytes):
        answer = client.post("/webhook", headers=HOOK, data=body, content_type="application/json")
    else:
        answer = client.post("/webhook", headers=HOOK, json=body)
    assert answer.status_code == 400
    assert answer.json is not None
    assert answer.json["error"] == "bad_request"
    assert problem in answer.json["message"]
    assert "Traceback" not in answer.get_data(as_text=True)
    assert enqueued(redis_client, settings) == []
    assert redis_client.hlen(Keys(settings.key_prefix).events()) == 0


def test_oversized_body_is_413(client: FlaskClient, redis_client: redis.Redis) -> None:
    answer = client.post("/webhook", headers=HOOK, data=b" " * (DEFAULT_MAX_CONTENT_LENGTH + 1))
    assert answer.status_code == 413
    assert answer.json is not None and answer.json["error"] == "payload_too_large"
    assert str(DEFAULT_MAX_CONTENT_LENGTH) in answer.json["message"]


def test_http_errors_are_json(client: FlaskClient) -> None:
    wrong_method = client.get("/webhook")
    assert wrong_method.status_code == 405
    assert wrong_method.json is not None and wrong_method.json["error"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]
    missing = client.get("/nothing-here")
    assert missing.status_code == 404
    assert missing.json is not None and missing.json["error"] == "not_found"


def test_unexpected_errors_are_500_without_details(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> int:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.extensions["ls_panoptic"].dispatcher, "sync_tasks", explode)
    answer = client.post(
        "/webhook", headers=HOOK, json=annotation_event("ANNOTATION_CREATED", 5, 7)
    )
    assert answer.status_code == 500
    assert answer.json == {"error": "internal_error", "status": 500,
                           "message": "internal error; see the server log"}  # fmt: skip


def test_redis_down_is_503(settings: Settings, tmp_path: Path) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    client = create_app(settings, dead).test_client()
    answer = client.post(
        "/webhook", headers=HOOK, json=annotation_event("ANNOTATION_CREATED", 5, 7)
    )
    assert answer.status_code == 503
    assert answer.json is not None and answer.json["error"] == "unavailable"
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json is not None and health.json["status"] == "DOWN"


def test_logs_hold_neither_bodies_nor_tokens(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    marker = "PRIVATE-PAYLOAD-MARKER"
    body = annotation_event("ANNOTATION_CREATED", 5, 7)
    body["task"]["data"]["image"] = f"/data/upload/3/{marker}.jpg"
    setup = {"project": "3.1700000000", "schema": marker, "hostname": "http://ls:8080",
             "access_token": "ls-access-token-SECRET"}  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        client.post("/webhook", headers=HOOK, json=body)
        client.post("/webhook", headers=HOOK, data=b"{" + marker.encode())
        client.post("/webhook", headers=bearer("wrong-" + marker), json=body)
        client.post("/setup", headers=basic(WEBHOOK_TOKEN), json=setup)
    logged = caplog.text
    assert "action=ANNOTATION_CREATED" in logged  # it does log, structured
    for secret in (marker, WEBHOOK_TOKEN, API_TOKEN, "ls-access-token-SECRET"):
        assert secret not in logged


# -- ML backend protocol ----------------------------------------------------------------------


def test_health_is_what_label_studio_expects(client: FlaskClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json == {
        "status": "UP",
        "model_class": MODEL_CLASS,
        "model_version": MODEL_VERSION,
    }


def test_setup_accepts_label_studio_payload(client: FlaskClient) -> None:
    payload = {"project": "3.1700000000", "schema": CONFIG, "hostname": "http://localhost:8080",
               "access_token": "abc", "extra_params": None}  # fmt: skip
    answer = client.post("/setup", headers=basic(WEBHOOK_TOKEN), json=payload)
    assert answer.status_code == 200
    assert answer.json == {"model_version": MODEL_VERSION}
    bad = client.post("/setup", headers=basic(WEBHOOK_TOKEN), data=b"[1]")
    assert bad.status_code == 400


def test_predict_returns_no_predictions_and_enqueues_nothing(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    payload = {"tasks": [ls_task(7), ls_task(8)], "project": "3.1700000000", "label_config": CONFIG,
               "params": {"login": None, "password": None, "context": None}}  # fmt: skip
    answer = client.post("/predict", headers=basic(WEBHOOK_TOKEN), json=payload)
    assert answer.status_code == 200
    assert answer.json is not None and answer.json["results"] == []
    assert enqueued(redis_client, settings) == []


# -- snapshot and entries API -----------------------------------------------------------------


def test_snapshot_streams_the_stored_entries(
    client: FlaskClient, store: Store, settings: Settings
) -> None:
    expected = put_entries(store)
    answer = client.get(f"/projects/{PROJECT}/snapshot.pkl", headers=API)
    assert answer.status_code == 200
    assert answer.mimetype == "application/octet-stream"
    assert answer.headers["X-Snapshot-Entries"] == "3"
    assert int(answer.headers["Content-Length"]) == len(answer.data)
    loaded = pickle.load(io.BytesIO(answer.data))
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert set(loaded[key]) == {"panoptic_mask", "inst2class"}
        mask = loaded[key]["panoptic_mask"]
        assert mask.dtype == np.uint32 and mask.flags.c_contiguous
        np.testing.assert_array_equal(mask, value["panoptic_mask"])
        assert loaded[key]["inst2class"] == value["inst2class"]
    answer.close()
    assert not settings.snapshot_dir.exists()  # streamed from the store: no file written


def test_snapshot_of_an_empty_known_project_is_an_empty_dict(
    client: FlaskClient, store: Store
) -> None:
    store.set_project(PROJECT, CONFIG, ID2LABEL)
    answer = client.get(f"/projects/{PROJECT}/snapshot.pkl", headers=API)
    assert answer.status_code == 200
    assert pickle.loads(answer.data) == {}


def test_snapshot_meta_and_entries(client: FlaskClient, store: Store) -> None:
    expected = put_entries(store)
    meta = client.get(f"/projects/{PROJECT}/snapshot.meta.json", headers=API).json
    assert meta is not None
    assert meta["project"] == PROJECT
    assert meta["id2label"] == {str(k): v for k, v in ID2LABEL.items()}
    assert sorted(meta["entries"]) == sorted(expected)
    assert meta["entries"]["img12.jpg"]["task_id"] == 12
    assert meta["entries"]["img12.jpg"]["annotation_id"] == 112

    states = client.get(f"/projects/{PROJECT}/entries", headers=API).json
    assert states is not None
    assert [(s["task_id"], s["key"], s["annotation_id"], s["status"]) for s in states] == [
        (11, "img11.jpg", 111, "ok"), (12, "img12.jpg", 112, "ok"), (13, "img13.jpg", 113, "ok"),
    ]  # fmt: skip


@pytest.mark.parametrize("tail", ["snapshot.pkl", "snapshot.meta.json", "entries"])
def test_unknown_project_is_404(client: FlaskClient, tail: str) -> None:
    answer = client.get(f"/projects/99/{tail}", headers=API)
    assert answer.status_code == 404
    assert answer.json is not None and "resync" in answer.json["message"]


def test_resync_returns_the_job_id(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    answer = client.post(f"/projects/{PROJECT}/resync", headers=API)
    assert answer.status_code == 202
    assert answer.json is not None
    assert enqueued(redis_client, settings) == [("worker.jobs.resync_project", [PROJECT])]
    assert make_queue(redis_client, settings.queue_name).get_job_ids() == [answer.json["job_id"]]


@pytest.mark.parametrize("value", ["true", "1", "YES"])
def test_resync_with_rebuild_enqueues_a_rebuild(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, value: str
) -> None:
    answer = client.post(f"/projects/{PROJECT}/resync?rebuild={value}", headers=API)
    assert answer.status_code == 202
    assert answer.json is not None and answer.json["rebuild"] is True
    assert enqueued(redis_client, settings) == [("worker.jobs.rebuild_project", [PROJECT])]


def test_resync_with_rebuild_false_is_a_plain_resync(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    answer = client.post(f"/projects/{PROJECT}/resync?rebuild=false", headers=API)
    assert answer.status_code == 202 and answer.json is not None
    assert answer.json["rebuild"] is False
    assert enqueued(redis_client, settings) == [("worker.jobs.resync_project", [PROJECT])]


def test_resync_with_an_unreadable_rebuild_flag_is_400_and_enqueues_nothing(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    answer = client.post(f"/projects/{PROJECT}/resync?rebuild=maybe", headers=API)
    assert answer.status_code == 400
    assert answer.json is not None and "'rebuild'" in answer.json["message"]
    assert "maybe" in answer.json["message"]
    assert enqueued(redis_client, settings) == []


# -- ops: dashboard and metrics ---------------------------------------------------------------


def test_dashboard_needs_the_api_token(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    refused = client.get("/rq/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")  # the browser asks
    assert client.get("/rq/", headers=basic(WEBHOOK_TOKEN)).status_code == 401
    page = client.get("/rq/", headers=basic(API_TOKEN, user="ops"))
    assert page.status_code == 200 and b"<html" in page.data
    client.post(f"/projects/{PROJECT}/resync", headers=API)
    queues = client.get("/rq/0/data/queues.json", headers=API).json
    assert queues is not None
    assert {q["name"]: q["count"] for q in queues["queues"]} == {settings.queue_name: 1}


def test_dashboard_refuses_cross_site_writes(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings
) -> None:
    client.post(f"/projects/{PROJECT}/resync", headers=API)
    path = f"/rq/queue/{settings.queue_name}/queued/empty"
    cross = {**basic(API_TOKEN), "Sec-Fetch-Site": "cross-site", "Origin": "http://evil.test"}
    assert client.post(path, headers=cross).status_code == 403
    assert len(enqueued(redis_client, settings)) == 1
    same = {**basic(API_TOKEN), "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}
    assert client.post(path, headers=same).status_code == 200
    assert enqueued(redis_client, settings) == []


def test_metrics_report_queue_events_and_entries(client: FlaskClient, store: Store) -> None:
    put_entries(store)
    store.mark_empty(PROJECT, 14, "2026-01-05T10:00:00+00:00")
    client.post("/webhook", headers=HOOK, json=annotation_event("ANNOTATION_CREATED", 5, 7))
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    for line in (
        'ls_panoptic_queue_jobs{queue="ls-panoptic",state="queued"} 1.0',
        'ls_panoptic_queue_jobs{queue="ls-panoptic",state="failed"} 0.0',
        'ls_panoptic_webhook_events_total{action="ANNOTATION_CREATED",handled="true"} 1.0',
        f'ls_panoptic_tasks{{project="{PROJECT}",status="ok"}} 3.0',
        f'ls_panoptic_tasks{{project="{PROJECT}",status="empty"}} 1.0',
        f'ls_panoptic_entries{{project="{PROJECT}"}} 3.0',
    ):
        assert line in text.splitlines()
    assert 'ls_panoptic_queue_oldest_job_age_seconds{queue="ls-panoptic"}' in text


# -- the serve command ------------------------------------------------------------------------


@pytest.fixture
def serve_env(redis_url: str) -> dict[str, str]:
    """The environment ``serve`` reads (set by CliRunner), tokens included."""
    tokens = {"WEBHOOK_TOKEN": WEBHOOK_TOKEN, "API_TOKEN": API_TOKEN}
    return {"REDIS_URL": redis_url, **tokens, "LS_PANOPTIC_DEV": ""}


def test_serve_refuses_to_start_without_tokens(serve_env: dict[str, str]) -> None:
    env = {**serve_env, "WEBHOOK_TOKEN": "", "API_TOKEN": ""}
    result = CliRunner().invoke(serve_module.serve, [], env=env)
    assert result.exit_code == 2
    assert "WEBHOOK_TOKEN and API_TOKEN must be set" in result.output


def test_serve_runs_gunicorn_with_the_built_app(
    serve_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[serve_module.GunicornApp] = []
    monkeypatch.setattr(serve_module.GunicornApp, "run", lambda self: started.append(self))
    args = ["--host", "0.0.0.0", "--port", "8123", "--workers", "3", "--threads", "2"]
    result = CliRunner().invoke(serve_module.serve, args, env=serve_env)
    assert result.exit_code == 0, result.output
    (gunicorn,) = started
    assert gunicorn.cfg.bind == ["0.0.0.0:8123"]
    assert (gunicorn.cfg.workers, gunicorn.cfg.threads) == (3, 2)
    assert gunicorn.cfg.worker_class_str == "gthread"
    app = gunicorn.load()
    assert isinstance(app, Flask) and "ls_panoptic" in app.extensions


def test_serve_dev_uses_flasks_server(
    serve_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(Flask, "run", lambda self, **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(serve_module.serve, ["--dev", "--port", "8124"], env=serve_env)
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["port"] == 8124 and calls[0]["debug"] is False

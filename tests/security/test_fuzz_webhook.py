"""Fuzzing ``POST /webhook`` and the ML-backend routes, with valid credentials (real Redis).

Properties, whatever the body, its encoding and its content type:

- never a 5xx; every 4xx carries the JSON error body (``{"error", "status", "message"}``);
- a refused request leaves Redis untouched: nothing enqueued, counted or indexed;
- an accepted event enqueues only what the answer names, with ids Label Studio can hold
  (integers 1 .. 2**63 - 1), and indexes only such ids;
- ``parse_event`` (the pure validator) raises nothing but ``PayloadError``.

Route and method fuzzing of the API and dashboard is in ``test_fuzz_api.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from backend.app import DEFAULT_MAX_CONTENT_LENGTH
from backend.events import HANDLED_ACTIONS, PayloadError, parse_event
from tests.service import (
    HOOK,
    MAX_ID,
    WEBHOOK_TOKEN,
    assert_json_error,
    assert_valid_ids,
    basic,
    enqueued,
)
from worker.keys import Keys
from worker.settings import Settings

from . import strategies

JOBS = {f"worker.jobs.{name}" for name in ("sync_task", "drop_tasks", "drop_annotations")}
JOBS.add("worker.jobs.rebuild_project")

# -- strategies -------------------------------------------------------------------------------

json_values = strategies.json_values(max_text=20, max_items=4, max_key=8, max_leaves=12)
ids = st.one_of(
    st.integers(min_value=1, max_value=50),  # valid
    st.sampled_from([0, -1, -(2**63), MAX_ID, MAX_ID + 1, 2**64, 10**40, 10**300]),
    st.integers(),
    st.floats(),  # 7.0, -0.0, nan, inf
    st.from_regex(r"[0-9]{1,4}", fullmatch=True),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.lists(st.integers(min_value=1, max_value=9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)
refs = ids | st.builds(lambda i: {"id": i}, ids)
task_objects = st.fixed_dictionaries({"id": ids}, optional={"project": refs, "data": json_values})
annotation_objects = st.fixed_dictionaries(
    {"id": ids}, optional={"task": refs, "project": refs, "result": json_values}
)
projects = refs | st.fixed_dictionaries(
    {"id": ids}, optional={"label_config": st.text(max_size=30) | ids}
)
FIELDS = {
    "project": projects,
    "task": refs | task_objects | st.lists(task_objects, max_size=3),
    "annotation": annotation_objects | st.lists(annotation_objects, max_size=3) | ids,
    "annotations": st.lists(annotation_objects, max_size=3) | json_values,
    "tasks": st.lists(task_objects, max_size=3) | json_values,
}
actions = st.one_of(
    st.sampled_from(sorted(HANDLED_ACTIONS)),
    st.sampled_from(["annotation_created", "ANNOTATION_CREATED ", "", "OTHER", "\u202eDETAERC"]),
    st.text(max_size=40),
    json_values,
)


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """Label Studio-shaped events: a real or odd action, its fields with ids of any type."""
    payload: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2))
    payload["action"] = draw(actions)
    for key in draw(st.sets(st.sampled_from(sorted(FIELDS)))):
        payload[key] = draw(FIELDS[key])
    return payload


@st.composite
def encoded(draw: st.DrawFn, payload: Any) -> bytes:
    """``payload`` as JSON (NaN and Infinity included), in one of the encodings JSON allows."""
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    codec = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-32"]))
    return text.encode(codec)


# One valid event per handled action, and the places of the ids the action reads.
TEMPLATES: dict[str, tuple[dict[str, Any], list[tuple[Any, ...]]]] = {
    "ANNOTATION_UPDATED": (
        {"annotation": {"id": 5, "task": 7}, "task": {"id": 7, "project": 3}, "project": {"id": 3}},
        [("annotation", "id"), ("task", "id"), ("project", "id")],
    ),
    "ANNOTATIONS_CREATED": (
        {"annotation": [{"id": 5, "task": 7}, {"id": 6, "task": {"id": 8}}], "project": 3},
        [
            ("annotation", 0, "id"),
            ("annotation", 0, "task"),
            ("annotation", 1, "task", "id"),
            ("project",),
        ],
    ),
    "ANNOTATIONS_DELETED": ({"annotations": [{"id": 5}, {"id": 6}]}, [("annotations", 1, "id")]),
    "TASKS_CREATED": (
        {"tasks": [{"id": 7, "project": 3}, {"id": 8}]},
        [("tasks", 0, "id"), ("tasks", 1, "id"), ("tasks", 0, "project")],
    ),
    "TASKS_DELETED": ({"tasks": [{"id": 7}], "project": {"id": 3}}, [("tasks", 0, "id")]),
    "PROJECT_UPDATED": ({"project": {"id": 3, "label_config": "<View/>"}}, [("project", "id")]),
    "START_TRAINING": ({"project": {"id": 3}}, [("project", "id")]),
}


@st.composite
def one_id_changed(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A valid event with one id it reads replaced; and whether the result is still valid."""
    action = draw(st.sampled_from(sorted(TEMPLATES)))
    template, places = TEMPLATES[action]
    payload: dict[str, Any] = json.loads(json.dumps(template)) | {"action": action}
    *path, last = draw(st.sampled_from(places))
    value = draw(ids)
    target = payload
    for step in path:
        target = target[step]
    target[last] = value
    return payload, type(value) is int and 1 <= value <= MAX_ID


bodies = st.one_of(
    payloads().flatmap(encoded),
    json_values.flatmap(encoded),
    st.binary(max_size=300),
    st.text(max_size=100).map(str.encode),
)
content_types = st.one_of(
    st.sampled_from(
        [
            None,
            "application/json",
            "application/json; charset=latin-1",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "image/png",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
credentials = st.one_of(
    st.just(HOOK),
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters=":")).map(
        lambda user: basic(WEBHOOK_TOKEN, user=user)
    ),
)


# -- checks -----------------------------------------------------------------------------------


def check_webhook_answer(
    answer: Any, redis_client: redis.Redis, settings: Settings
) -> dict[str, Any]:
    """The properties of the module doc, for one answer of ``/webhook``."""
    assert answer.status_code in (200, 202, 400, 413), (answer.status_code, answer.data[:300])
    if answer.status_code >= 400:
        assert_json_error(answer)
        assert redis_client.dbsize() == 0, sorted(redis_client.keys())
        return {}
    body = answer.get_json()
    assert isinstance(body, dict)
    keys = Keys(settings.key_prefix)
    calls = enqueued(redis_client, settings)
    if answer.status_code == 200:
        assert body["status"] == "ignored"
        assert calls == []
        assert redis_client.keys() == [keys.events().encode()]
        return body
    assert body["status"] == "accepted"
    for func, args in calls:
        assert func in JOBS
        assert_valid_ids(args)
    if "tasks" in body:
        assert_valid_ids(body["tasks"])
    if "enqueued" in body:  # sync: one job per task the answer names (a fresh database)
        assert body["enqueued"] == len(calls)
        assert sorted(args[1] for _f, args in calls) == sorted(set(body["tasks"]))
    for field, where in redis_client.hgetall(keys.annotations()).items():
        assert isinstance(where, bytes)
        project, _, task = where.decode().partition(":")
        assert_valid_ids([int(field), int(project), int(task)])
    return body


# -- properties -------------------------------------------------------------------------------


def test_parse_event_raises_only_payload_errors(fuzz: hypothesis_settings) -> None:
    @fuzz
    @given(payload=payloads() | json_values)
    def check(payload: Any) -> None:
        try:
            event = parse_event(payload)
        except PayloadError as exc:
            assert str(exc)
            return
        seen = [event.project] if hasattr(event, "project") else []
        seen += [*getattr(event, "task_ids", ()), *getattr(event, "annotation_ids", ())]
        for annotation_id, task_id in getattr(event, "annotations", {}).items():
            seen += [annotation_id, task_id]
        assert_valid_ids(seen)

    check()


def test_webhook_bodies_never_5xx_and_refusals_touch_nothing(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, fuzz: hypothesis_settings
) -> None:
    @fuzz
    @given(body=bodies, content_type=content_types, headers=credentials)
    def check(body: bytes, content_type: str | None, headers: dict[str, str]) -> None:
        redis_client.flushdb()
        answer = client.post("/webhook", data=body, content_type=content_type, headers=headers)
        check_webhook_answer(answer, redis_client, settings)

    check()


def test_webhook_events_enqueue_only_valid_ids(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, fuzz: hypothesis_settings
) -> None:
    @fuzz
    @given(payload=payloads())
    def check(payload: dict[str, Any]) -> None:
        redis_client.flushdb()
        answer = client.post("/webhook", headers=HOOK, json=payload)
        check_webhook_answer(answer, redis_client, settings)

    check()


def test_one_bad_id_refuses_the_whole_event(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, fuzz: hypothesis_settings
) -> None:
    @fuzz
    @given(case=one_id_changed())
    def check(case: tuple[dict[str, Any], bool]) -> None:
        payload, valid = case
        redis_client.flushdb()
        answer = client.post("/webhook", headers=HOOK, json=payload)
        assert answer.status_code in ((200, 202) if valid else (400,)), answer.data[:300]
        check_webhook_answer(answer, redis_client, settings)

    check()


@pytest.mark.parametrize("route", ["/setup", "/predict"])
def test_ml_backend_routes_never_5xx_and_store_nothing(
    client: FlaskClient,
    redis_client: redis.Redis,
    fuzz: hypothesis_settings,
    route: str,
) -> None:
    @fuzz
    @given(body=bodies, content_type=content_types, headers=credentials)
    def check(body: bytes, content_type: str | None, headers: dict[str, str]) -> None:
        redis_client.flushdb()
        answer = client.post(route, data=body, content_type=content_type, headers=headers)
        assert answer.status_code in (200, 400), (answer.status_code, answer.data[:300])
        if answer.status_code == 400:
            assert_json_error(answer)
        assert redis_client.dbsize() == 0

    check()


# -- huge, deep and odd bodies ----------------------------------------------------------------

_DIGITS = "9" * 5000  # past Python's 4300-digit int parsing limit
_PAD = DEFAULT_MAX_CONTENT_LENGTH - 1000
EXTREMES: dict[str, tuple[bytes, int]] = {
    "just under the size limit": (json.dumps({"action": "BIG", "pad": "x" * _PAD}).encode(), 200),
    "over the size limit": (b" " * (DEFAULT_MAX_CONTENT_LENGTH + 1), 413),
    "5000-digit project id": (
        b'{"action": "START_TRAINING", "project": ' + _DIGITS.encode() + b"}",
        400,
    ),
    "5000-digit task id": (
        b'{"action": "TASKS_CREATED", "project": 3, "tasks": [{"id": ' + _DIGITS.encode() + b"}]}",
        400,
    ),
    "id past int64": (b'{"action": "START_TRAINING", "project": 9223372036854775808}', 400),
    "id 1e400": (b'{"action": "START_TRAINING", "project": 1e400}', 400),
    "id NaN": (b'{"action": "TASKS_DELETED", "project": 3, "tasks": [{"id": NaN}]}', 400),
    "id 7.0": (b'{"action": "TASKS_DELETED", "project": 3, "tasks": [{"id": 7.0}]}', 400),
    "id true": (b'{"action": "ANNOTATIONS_DELETED", "annotations": [{"id": true}]}', 400),
    "deep arrays in a field": (
        b'{"action": "TASKS_CREATED", "tasks": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
    ),
    "deep objects": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400),
    "deep just under the recursion limit": (
        b'{"action": "TASKS_CREATED", "tasks": ' + b"[" * 900 + b"]" * 900 + b"}",
        400,
    ),
    "lone surrogate action": (b'{"action": "\\ud800"}', 200),
    "bidi and emoji action": ('{"action": "\u202e\U0001f600"}'.encode(), 200),
    "NUL in action": (b'{"action": "ANNOTATION_CREATED\\u0000"}', 200),
    "utf-16 with BOM": ('{"action": "X"}'.encode("utf-16"), 200),
    "BOM only": (b"\xef\xbb\xbf", 400),
    "truncated utf-8": (b'{"action": "\xe2\x82"}', 400),
    "NUL bytes": (b"\x00" * 64, 400),
    "JSON then garbage": (b'{"action": "X"} {"action": "Y"}', 400),
    "many tasks, one bad id": (
        json.dumps(
            {
                "action": "TASKS_DELETED",
                "project": 3,
                "tasks": [{"id": n} for n in range(1, 50_001)] + [{"id": "x"}],
            }
        ).encode(),
        400,
    ),
}


@pytest.mark.parametrize("case", list(EXTREMES))
def test_extreme_bodies(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, case: str
) -> None:
    body, status = EXTREMES[case]
    answer = client.post("/webhook", headers=HOOK, data=body, content_type="application/json")
    assert answer.status_code == status, answer.data[:300]
    check_webhook_answer(answer, redis_client, settings)
    if status == 200:
        counted = redis_client.hgetall(Keys(settings.key_prefix).events())
        assert counted in ({b"OTHER": b"1"}, {b"BIG": b"1"}, {b"X": b"1"}), counted

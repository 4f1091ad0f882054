"""Fuzzing every route of the service (API, dashboard, ML backend, ops) and arbitrary paths,
with every method and with valid, wrong and garbage credentials (real Redis).

Properties, for every request:

- never a 5xx; every 4xx carries the JSON error body (HEAD: no body);
- a guarded area answers nothing but an error to the wrong credentials: ``/rq`` and everything
  under it 401 without ``API_TOKEN``; ``/projects/...`` is never 2xx/3xx without it (Bearer only);
  ``/webhook``, ``/setup``, ``/predict`` never 2xx without ``WEBHOOK_TOKEN``;
- a refused request (4xx) leaves every key in Redis exactly as it was, and nothing is ever
  enqueued for an id Label Studio cannot have (``/projects/0/resync``).

Each example starts from the same store: a known project with entries, and a queued job.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import numpy as np
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ls_panoptic.model import Entry
from tests.service import (
    API,
    API_TOKEN,
    MAX_ID,
    WEBHOOK_TOKEN,
    assert_json_error,
    assert_valid_ids,
    basic,
    bearer,
    enqueued,
)
from worker.dispatcher import Dispatcher
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

PROJECT = 3
CONFIG = '<View><Image name="image" value="$image"/><BrushLabels name="t" toName="image">' \
    '<Label value="leaf"/></BrushLabels></View>'  # fmt: skip
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND")
_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")

segments = st.one_of(
    st.integers(min_value=-5, max_value=10**30).map(str),
    st.sampled_from(
        [
            "0",
            "3",
            "99",
            "..",
            ".",
            "%2e%2e",
            "%00",
            "%2F",
            "ls-panoptic",
            "queued",
            "failed",
            "finished",
            "started",
            "deferred",
            "scheduled",
            "canceled",
            "asc",
            "desc",
            "1",
            "9" * 5000,
            "\u0663",
            "snapshot.pkl",
            "entries",
            "x.json",
        ]
    ),
    st.text(max_size=12).map(lambda text: quote(text, safe="")),
)
CREDENTIALS: dict[str, dict[str, str]] = {
    "none": {},
    "api bearer": bearer(API_TOKEN),
    "api basic": basic(API_TOKEN),
    "webhook bearer": bearer(WEBHOOK_TOKEN),
    "webhook basic": basic(WEBHOOK_TOKEN),
    "wrong bearer": bearer("wrong-token"),
    "api token as Token": {"Authorization": f"Token {API_TOKEN}"},
}
credentials = st.one_of(
    st.sampled_from(sorted(CREDENTIALS)).map(lambda name: (name, CREDENTIALS[name])),
    # garbage, including non-ASCII text where base64 is expected
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40).map(
        lambda text: ("garbage", {"Authorization": text})
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20).map(
        lambda text: ("garbage", {"Authorization": f"Basic {text}"})
    ),
)


def seed_store(client: redis.Redis, settings: Settings) -> None:
    """A known project with two entries, one task in error, and one queued job."""
    store = Store(client, Keys(settings.key_prefix))
    store.set_project(PROJECT, CONFIG, {0: "leaf", 1: "background"})
    for task_id in (11, 12):
        mask = np.full((4, 5), 1, dtype=np.uint32)
        entry = Entry(f"img{task_id}.jpg", mask, {1: 0}, {"task_id": task_id})
        store.put_entry(PROJECT, task_id, entry, "2026-01-05T10:00:00+00:00")
    store.record_error(PROJECT, 13, "task 13: region r1: broken", "2026-01-05T10:00:00+00:00")
    Dispatcher(client, settings).sync_tasks(PROJECT, [11])


def fingerprint(client: redis.Redis) -> dict[bytes, Any]:
    """Every key and its serialized value."""
    return {key: client.dump(key) for key in sorted(client.keys()) if isinstance(key, bytes)}


@st.composite
def paths(draw: st.DrawFn, app: Flask) -> str:
    """A path of one of the app's routes with arbitrary arguments, or an arbitrary path."""
    rules = [rule.rule for rule in app.url_map.iter_rules()]
    if draw(st.booleans()):
        prefix = draw(st.sampled_from(["", "/projects", "/rq", "/rq/0", "/webhook", "/health"]))
        path = prefix + "/" + "/".join(draw(st.lists(segments, max_size=5)))
        return "/" + path.lstrip("/")  # a test client reads '//x' as a host name

    def argument(match: re.Match[str]) -> str:
        if match["converter"] == "int":
            return draw(st.integers(min_value=0, max_value=10**25).map(str) | segments)
        return draw(segments)

    return _ARGUMENT.sub(argument, draw(st.sampled_from(rules)))


def check_guards(path: str, method: str, who: str, status: int) -> None:
    """The guard properties of the module doc."""
    api = who in ("api bearer", "api basic")
    if path == "/rq" or path.startswith("/rq/"):
        assert api or status == 401, (status, who)
    if path.startswith("/projects/") and status < 400:
        assert who == "api bearer", (status, who)
    if path in ("/webhook", "/setup", "/predict") and status < 300 and method != "OPTIONS":
        assert who in ("webhook bearer", "webhook basic"), (status, who)


def test_every_route_and_method_with_any_credentials(
    app: Flask,
    client: FlaskClient,
    redis_client: redis.Redis,
    settings: Settings,
    fuzz: hypothesis_settings,
) -> None:
    @fuzz
    @given(
        data=st.data(),
        method=st.sampled_from(METHODS),
        credential=credentials,
        site=st.sampled_from([None, "same-origin", "cross-site"]),
    )
    def check(
        data: st.DataObject, method: str, credential: tuple[str, dict[str, str]], site: str | None
    ) -> None:
        redis_client.flushdb()
        seed_store(redis_client, settings)
        before = fingerprint(redis_client)
        path = data.draw(paths(app), label="path")
        who, headers = credential
        headers = headers | ({"Sec-Fetch-Site": site} if site else {})
        body: Any = data.draw(st.none() | st.binary(max_size=64), label="body")
        answer = client.open(path, method=method, headers=headers, data=body)
        assert answer.status_code < 500, (answer.status_code, answer.data[:300])
        if answer.status_code >= 400:
            assert_json_error(answer, method)
            assert fingerprint(redis_client) == before
        check_guards(answer.request.path, method, who, answer.status_code)
        for _function, args in enqueued(redis_client, settings):  # e.g. a resync
            assert_valid_ids(args)
        answer.close()

    check()


def test_project_ids_in_paths(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, fuzz: hypothesis_settings
) -> None:
    """With the right token: a project id Label Studio can have is served (or 404 unknown, or a
    resync enqueued); any other (0, past 2**63 - 1, not digits) is 404 and enqueues nothing."""

    @fuzz
    @given(
        project=st.integers(min_value=0, max_value=2**70).map(str)
        | st.sampled_from(["0", "00", str(MAX_ID), str(MAX_ID + 1), "9" * 5000, "\u0663"])
        | segments,
        tail=st.sampled_from(["snapshot.pkl", "snapshot.meta.json", "entries", "resync"]),
    )
    def check(project: str, tail: str) -> None:
        redis_client.flushdb()
        seed_store(redis_client, settings)
        before = enqueued(redis_client, settings)
        method = "POST" if tail == "resync" else "GET"
        answer = client.open(f"/projects/{project}/{tail}", method=method, headers=API)
        digits = project.isdecimal() and len(project) < 30  # werkzeug's int: any Unicode digit
        number = int(project) if digits else None
        if number is None or not 1 <= number <= MAX_ID:
            assert answer.status_code in (404, 405), answer.data[:200]
        elif tail == "resync":
            assert answer.status_code == 202
        else:
            assert answer.status_code == (200 if number == PROJECT else 404)
        if answer.status_code >= 400:
            assert_json_error(answer, method)
            assert enqueued(redis_client, settings) == before
        for _function, args in enqueued(redis_client, settings):
            assert_valid_ids(args)
        answer.close()

    check()


def test_preview_task_ids_and_sizes(
    client: FlaskClient, redis_client: redis.Redis, settings: Settings, fuzz: hypothesis_settings
) -> None:
    """``/entries/<task>/preview.png``: a PNG for a task with an entry and a size in range, 404
    for any other task id, 400 naming ``size`` for any other size; never a 5xx."""
    seed_store(redis_client, settings)

    @fuzz
    @given(
        task=st.sampled_from(["11", "12", "13", "0", str(MAX_ID), str(MAX_ID + 1), "-1"])
        | st.integers(min_value=0, max_value=2**70).map(str)
        | segments,
        size=st.none() | st.integers(min_value=-5, max_value=20_000).map(str) | segments,
    )
    def check(task: str, size: str | None) -> None:
        query = {} if size is None else {"size": size}
        answer = client.get(
            f"/projects/{PROJECT}/entries/{task}/preview.png", query_string=query, headers=API
        )
        has_entry = task in ("11", "12")
        digits = (size or "").strip()
        plain = digits.isascii() and digits.isdigit() and len(digits) < 30
        size_ok = size is None or (plain and 16 <= int(digits) <= 16384)
        if has_entry and size_ok:
            assert answer.status_code == 200 and answer.data.startswith(b"\x89PNG\r\n\x1a\n")
        elif has_entry:
            assert answer.status_code == 400 and "'size'" in answer.json["message"]
        else:
            assert answer.status_code == 404
            assert_json_error(answer, "GET")
        answer.close()

    check()

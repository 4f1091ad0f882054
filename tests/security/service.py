"""The service under test: its tokens, how to build it, and what it left in Redis.

Shared by the fuzz and security tests of this folder (fixtures live in ``conftest.py``) and by
``tests/integration/test_backend.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from werkzeug.test import TestResponse

from backend.app import create_app
from worker.jobqueue import make_queue
from worker.settings import Settings

__all__ = [
    "API",
    "API_TOKEN",
    "HOOK",
    "MAX_ID",
    "WEBHOOK_TOKEN",
    "assert_json_error",
    "assert_valid_ids",
    "basic",
    "bearer",
    "build_app",
    "enqueued",
    "service_settings",
]

# '=' '/' '+' and a Basic-looking prefix: tokens must survive Bearer and Basic parsing
WEBHOOK_TOKEN = "wh-Zm9v=bar/+SECRET-webhook-token"
API_TOKEN = "api-c2VjcmV0=SECRET-api-token"
MAX_ID = 2**63 - 1  # Label Studio's ids are database integers (bigint at most)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(password: str, user: str = "label-studio") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


HOOK = bearer(WEBHOOK_TOKEN)
API = bearer(API_TOKEN)


def service_settings(redis_url: str, snapshot_dir: Path, **overrides: Any) -> Settings:
    """Production-like settings: both tokens set, dev mode off."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "webhook_token": WEBHOOK_TOKEN,
        "api_token": API_TOKEN,
        "snapshot_dir": snapshot_dir,
    }
    return Settings(**(values | overrides))


def build_app(settings: Settings, client: redis.Redis, testing: bool = False) -> Flask:
    """The service's app. By default errors go through the JSON handlers, as in production;
    ``testing=True``: an exception in a handler propagates to the test instead."""
    app = create_app(settings, client)
    app.testing = testing
    return app


def enqueued(client: redis.Redis, settings: Settings) -> list[tuple[str, list[Any]]]:
    """(function, args) of every job waiting in the service's queue, oldest first."""
    queue = make_queue(client, settings.queue_name)
    return [(str(job.func_name), list(job.args)) for job in queue.get_jobs()]


def assert_json_error(answer: TestResponse, method: str = "POST") -> dict[str, Any]:
    """A 4xx/5xx answer carries the service's JSON error body (HEAD: no body at all)."""
    assert answer.status_code >= 400
    if method == "HEAD":
        assert answer.data == b""
        return {}
    assert answer.mimetype == "application/json", answer.data[:200]
    body = answer.get_json()
    assert isinstance(body, dict) and set(body) == {"error", "status", "message"}, body
    assert body["status"] == answer.status_code
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in body["message"]
    return body


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def assert_valid_ids(values: Any) -> None:
    """Every leaf of ``values`` (nested lists) is an id Label Studio can have."""
    for value in _leaves(values):
        assert type(value) is int and 1 <= value <= MAX_ID, f"bad id {value!r} reached Redis"

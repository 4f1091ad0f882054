"""The service under test, as every test folder sees it: its tokens and credentials, and what it
left in Redis. The fixtures that build it (``settings``, ``app``, ``client``, ``rt`` ...) are in
``tests/conftest.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import redis
from werkzeug.test import TestResponse

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
    "enqueued",
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

"""Integration fixtures: a real Redis (never fakeredis), one database flushed around each test.

The database is ``redis://127.0.0.1:6379/15``; ``LSP_TEST_REDIS_URL`` points elsewhere (for
example another database number, to keep parallel runs apart). Database 0 is refused: these
fixtures flush it. Without a reachable Redis the tests skip with the reason, unless
``LSP_REDIS_REQUIRED=1`` (CI): then they fail, so a missing server cannot pass as a skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def _unavailable(message: str) -> None:
    if os.environ.get("LSP_REDIS_REQUIRED", "").strip() == "1":
        pytest.fail(f"{message} (LSP_REDIS_REQUIRED=1)", pytrace=False)
    pytest.skip(f"{message}; set LSP_REDIS_REQUIRED=1 to fail instead")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of the test database, checked reachable once per session."""
    url = os.environ.get("LSP_TEST_REDIS_URL", "").strip() or DEFAULT_TEST_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        if int(client.connection_pool.connection_kwargs.get("db", 0)) == 0:
            pytest.fail(f"{url}: tests flush their database; use one other than 0")
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {url} is unreachable ({exc}): start redis-server or run .ci/run")
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client (bytes replies) on the test database, empty at the start of the test."""
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()

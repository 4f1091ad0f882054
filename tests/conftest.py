"""Shared fixtures: a small synthetic Label Studio project, and a real Redis.

Redis: one database, ``redis://127.0.0.1:6379/15`` unless ``LSP_TEST_REDIS_URL`` says otherwise
(another database number keeps parallel runs apart), flushed around each test that uses it.
Database 0 is refused: these fixtures flush it. Without a reachable Redis the tests skip with the
reason, unless ``LSP_REDIS_REQUIRED=1`` (CI): then they fail, so a missing server cannot pass as
a skip. Never fakeredis.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.synthetic import SyntheticProject, make_project


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> SyntheticProject:
    """4 images of 96x128 (image 0: EXIF-rotated JPEG), every region kind, seeded."""
    folder: Path = tmp_path_factory.mktemp("project")
    return make_project(folder, n_images=4, height=96, width=128, n_brush=3, n_poly=2, seed=7)


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

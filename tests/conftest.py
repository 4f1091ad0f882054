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

from devstack.synthetic import SyntheticProject, make_project


def pytest_addoption(parser: pytest.Parser) -> None:
    """Sizes of the long test variants (CI runs the defaults)."""
    parser.addoption(
        "--fuzz-examples", type=int, default=None, metavar="N",
        help="examples per fuzz test in tests/security (default 200, derandomized; given N, "
        "the run is randomized)",
    )  # fmt: skip
    group = parser.getgroup("ls-panoptic live sync")
    group.addoption(
        "--convergence-trials", type=int, default=2, metavar="N",
        help="trials of the convergence property test (default 2)",
    )  # fmt: skip
    group.addoption(
        "--convergence-ops", type=int, default=12, metavar="M",
        help="random Label Studio operations per trial (default 12)",
    )  # fmt: skip
    group.addoption(
        "--convergence-seed", type=int, default=None, metavar="S",
        help="seed of the first trial (trial i uses S+i); default: random, printed on failure",
    )  # fmt: skip
    group.addoption(
        "--fault-outage", type=float, default=20.0, metavar="SECONDS",
        help="how long Label Studio stays unreachable in test_faults (default 20)",
    )  # fmt: skip


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

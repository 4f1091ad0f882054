"""Integration tests run against a real Redis: fixtures ``redis_url`` and ``redis_client`` come
from ``tests/conftest.py`` (one database, flushed around each test; see there). Here: ``stub``
(Label Studio as the jobs see it) and ``rt``, the worker's runtime over both, active for the
test; ``keys`` and ``store``, the store alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker import runtime
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

from .stub_labelstudio import StubLabelStudio


@pytest.fixture
def stub() -> StubLabelStudio:
    return StubLabelStudio()


@pytest.fixture
def rt(
    redis_client: redis.Redis, stub: StubLabelStudio, tmp_path: Path
) -> Iterator[runtime.Runtime]:
    settings = Settings(queue_name="lsp-test", key_prefix="lsptest")
    built = runtime.build(settings, connection=redis_client, labelstudio=stub, scratch_dir=tmp_path)
    with runtime.activate(built):
        yield built


@pytest.fixture
def keys() -> Keys:
    return Keys("lsptest")


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> Store:
    return Store(redis_client, keys, grace_seconds=600)

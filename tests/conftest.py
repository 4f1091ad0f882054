"""Shared fixtures, one per layer (as in Flask's tutorial): a small synthetic Label Studio
project; a real Redis (``redis_url``, ``redis_client``); the service's ``settings``; the store
(``keys``, ``store``); Label Studio as the worker's jobs see it (``stub``); the worker's runtime
(``rt``, and ``make_rt`` for other settings); the backend (``app``, ``client``); one real Label
Studio for the whole session (``label_studio``: tests/e2e and tests/deploy). Tokens,
credentials and the checks of what the service left in Redis: ``tests/service.py``.

Redis: one database, ``redis://127.0.0.1:6379/15`` unless ``LSP_TEST_REDIS_URL`` says otherwise
(another database number keeps parallel runs apart), flushed around each test that uses it.
Database 0 is refused: these fixtures flush it. Without a reachable Redis the tests skip with the
reason, unless ``LSP_REDIS_REQUIRED=1`` (CI): then they fail, so a missing server cannot pass as
a skip. Never fakeredis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from backend.app import create_app
from devstack.labelstudio import (
    LS_VERSION,
    LabelStudioServer,
    LabelStudioStartError,
    label_studio_binary,
    resolve_venv,
    start_server,
    stop_server,
)
from devstack.supervisor import log_tail
from devstack.synthetic import SyntheticProject, make_project
from tests.service import API_TOKEN, WEBHOOK_TOKEN
from tests.stub_labelstudio import StubLabelStudio
from tests.summary import SUMMARY, summarise
from worker import runtime
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store


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


# -- the service under test -------------------------------------------------------------------


@pytest.fixture
def settings(redis_url: str, tmp_path: Path) -> Settings:
    """Production-like settings of the backend and the worker alike: both tokens
    (``tests/service.py``), no dev mode, the test database, keys under ``lsptest``."""
    return Settings(
        redis_url=redis_url,
        webhook_token=WEBHOOK_TOKEN,
        api_token=API_TOKEN,
        key_prefix="lsptest",
        snapshot_dir=tmp_path / "snapshots",
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def store(redis_client: redis.Redis, keys: Keys) -> Store:
    """The store alone; superseded blobs expire after 600 s."""
    return Store(redis_client, keys, grace_seconds=600)


@pytest.fixture
def stub() -> StubLabelStudio:
    """Label Studio as the jobs see it (a module that needs another one overrides this)."""
    return StubLabelStudio()


@pytest.fixture
def make_rt(
    settings: Settings,
    redis_client: redis.Redis,
    stub: runtime.LabelStudioAPI,
    tmp_path: Path,
) -> Iterator[Callable[..., runtime.Runtime]]:
    """``make_rt(**overrides)``: the worker's runtime over ``settings`` with those fields
    replaced, the test database and ``stub``, active until the test ends."""
    with contextlib.ExitStack() as active:

        def make(**overrides: Any) -> runtime.Runtime:
            built = runtime.build(
                dataclasses.replace(settings, **overrides),
                connection=redis_client,
                labelstudio=stub,
                scratch_dir=tmp_path,
            )
            return active.enter_context(runtime.activate(built))

        yield make


@pytest.fixture
def rt(make_rt: Callable[..., runtime.Runtime]) -> runtime.Runtime:
    """The worker's runtime over ``settings``, active for the test."""
    return make_rt()


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    """The service's app as ``serve`` builds it: its error handlers answer every exception,
    even an unexpected one, with the JSON error body."""
    return create_app(settings, redis_client)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# A real Label Studio 1.23.2 for the session (tests/e2e, tests/deploy). Install it once with
# .ci/install-label-studio (its own virtualenv: $LS_VENV or <repo>/.venv-labelstudio). Without it
# these tests skip, unless LS_E2E_REQUIRED=1 (then they fail: meant for CI, so that a broken
# install cannot pass as a skip).


def _missing_server(message: str) -> NoReturn:
    if os.environ.get("LS_E2E_REQUIRED") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_LOG_SHOWN = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def label_studio(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LabelStudioServer]:
    """A running Label Studio (``url``, ``token``, ``log_path``), stopped at session end."""
    venv = resolve_venv()
    binary = label_studio_binary(venv)
    if binary is None:
        _missing_server(
            f"Label Studio is not installed in {venv}; run .ci/install-label-studio "
            "(or point LS_VENV at a virtualenv with label-studio==1.23.2)"
        )
    try:
        server = start_server(binary, tmp_path_factory.mktemp("label-studio"))
    except LabelStudioStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    summarise(
        request.config,
        f"Label Studio {LS_VERSION} healthy at {server.url} after {server.startup_seconds:.1f} s "
        f"(log: {server.log_path})",
    )
    try:
        yield server
    finally:
        stop_server(server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show the Label Studio log under the first failing test that used the server (later
    failures name the file only, to keep the report short)."""
    report = yield
    server = getattr(item, "funcargs", {}).get("label_studio")
    if report.failed and isinstance(server, LabelStudioServer):
        shown = item.config.stash.get(_LOG_SHOWN, False)
        tail = "(tail shown under the first failure)" if shown else log_tail(server.log_path)
        report.sections.append(("Label Studio log", f"{server.log_path}\n{tail}"))
        item.config.stash[_LOG_SHOWN] = True
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Timings of the real server, for the CI log."""
    for line in terminalreporter.config.stash.get(SUMMARY, []):
        terminalreporter.write_line(line)

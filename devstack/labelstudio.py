"""Start and stop one real Label Studio server from its own virtualenv, offline, on 127.0.0.1.

Used by ``ls-panoptic up --demo``, the end-to-end tests and the service benchmark. The server
runs from Label Studio's own virtualenv (:mod:`devstack.labelstudio_venv` finds it), binds to
127.0.0.1 on a free port, keeps every byte of state (SQLite, media, secret key, home) under one
folder, and is run and stopped by :mod:`devstack.supervisor` (a session of its own, stopped by
its PID, never by name).

Facts about Label Studio 1.23.2 behind the choices here are listed in the docstring of
``tests/e2e/conftest.py``. Two matter most: the initial user, its password and its legacy API
token are applied only when the data folder is new (a restart on an existing folder keeps the
old ones), and a taken port is not an error (it silently moves on), hence the version check.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from .labelstudio_venv import LS_VERSION, label_studio_binary, resolve_venv
from .supervisor import Process, ProcessExited, SupervisorError, free_port, http_ok, log_tail, spawn

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "LS_VERSION",
    "Credentials",
    "LabelStudioServer",
    "LabelStudioStartError",
    "label_studio_binary",
    "resolve_venv",
    "start_server",
    "stop_server",
]

#: seconds to wait for /health; the first start runs every migration (about 30-45 s here)
DEFAULT_START_TIMEOUT = 180.0
#: seconds between /health polls
POLL_INTERVAL = 0.5
#: seconds to wait after SIGTERM before SIGKILL
STOP_TIMEOUT = 30.0


class LabelStudioStartError(RuntimeError):
    """Label Studio did not come up; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Credentials:
    """The initial user (an e-mail address), its password and its legacy API token."""

    username: str
    password: str
    token: str = dataclasses.field(repr=False)

    @classmethod
    def generate(cls, username: str = "e2e@example.com") -> Credentials:
        return cls(username, secrets.token_urlsafe(16), secrets.token_hex(20))


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio.

    Attributes:
        url: base URL without trailing slash, e.g. ``http://127.0.0.1:41234``.
        token: legacy API token; send it as ``Authorization: Token <token>``.
        username, password: the initial user (an e-mail address) and its password.
        data_dir: ``LABEL_STUDIO_BASE_DATA_DIR`` (SQLite database, uploads, exports).
        files_dir: ``LOCAL_FILES_DOCUMENT_ROOT`` for ``/data/local-files/?d=...`` URLs.
        service: the supervised ``label-studio start`` process (its log: ``log_path``).
        startup_seconds: from spawn to the first healthy answer.
    """

    url: str
    token: str = dataclasses.field(repr=False)
    username: str
    password: str = dataclasses.field(repr=False)
    data_dir: Path
    files_dir: Path
    service: Process
    startup_seconds: float

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.service.popen

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        return self.service.log

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def _server_env(root: Path, credentials: Credentials) -> dict[str, str]:
    """A minimal, offline environment: nothing of the caller's leaks in (LS reads ``PORT``,
    ``USERNAME``, ``HOST``, ``DEBUG``... with and without its ``LABEL_STUDIO_`` prefix)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "LANG": "C.UTF-8",
        "TMPDIR": str(root / "tmp"),
        "PYTHONUNBUFFERED": "1",
        "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"),
        "LABEL_STUDIO_USERNAME": credentials.username,
        "LABEL_STUDIO_PASSWORD": credentials.password,
        "LABEL_STUDIO_USER_TOKEN": credentials.token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(root / "files"),
    }


def start_server(
    binary: Path,
    root: Path,
    timeout: float = DEFAULT_START_TIMEOUT,
    *,
    credentials: Credentials | None = None,
) -> LabelStudioServer:
    """Start ``label-studio start`` with all state under ``root`` and wait until it is healthy.

    ``credentials`` (default: new random ones) create the initial user on a new ``root``; on a
    ``root`` that already holds a database they must be the ones it was created with.

    Raises:
        LabelStudioStartError: it exited, timed out, is not the expected version, or refused
            the token.
    """
    for sub in ("home", "tmp", "data", "files"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = _spawn(binary, root, credentials or Credentials.generate())
    try:
        _wait_healthy(server, timeout)
        _check_version_and_token(server)
    except BaseException:
        stop_server(server)
        raise
    elapsed = time.monotonic() - started
    return dataclasses.replace(server, startup_seconds=elapsed)


def _spawn(binary: Path, root: Path, credentials: Credentials) -> LabelStudioServer:
    """``label-studio start`` on a free port, supervised, output to its log."""
    url = f"http://127.0.0.1:{free_port()}"
    command = [
        str(binary), "start", "--no-browser",
        "--internal-host", "127.0.0.1",  # bind address; --host is only the public URL
        "--port", url.rsplit(":", 1)[1],
        "--host", url,
        "--data-dir", str(root / "data"),
    ]  # fmt: skip
    env = _server_env(root, credentials)
    service = spawn("Label Studio", command, env, root / "label-studio.log", cwd=root)
    service.url = url
    return LabelStudioServer(
        url, credentials.token, credentials.username, credentials.password,
        root / "data", root / "files", service, 0.0,
    )  # fmt: skip


def _wait_healthy(server: LabelStudioServer, timeout: float) -> None:
    health, log = f"{server.url}/health", server.log_path
    try:
        server.service.wait_ready(lambda: http_ok(health, 5.0), health, timeout, POLL_INTERVAL)
    except ProcessExited as exc:
        raise LabelStudioStartError(
            f"label-studio exited with code {server.process.returncode} before it was "
            f"healthy; log {log}:\n{log_tail(log)}"
        ) from exc
    except SupervisorError as exc:
        raise LabelStudioStartError(
            f"label-studio was not healthy at {health} in time; log {log}:\n{log_tail(log)}"
        ) from exc


def _check_version_and_token(server: LabelStudioServer) -> None:
    with httpx.Client(timeout=10.0, headers=server.headers) as client:
        try:
            release = client.get(f"{server.url}/api/version/").json().get("release")
        except ValueError as exc:  # not JSON: something else answers on that port
            raise LabelStudioStartError(f"{server.url}/api/version/ is not JSON: {exc}") from exc
        if release != LS_VERSION:
            raise LabelStudioStartError(
                f"{server.url} answers as Label Studio {release!r}, expected {LS_VERSION}"
            )
        whoami = client.get(f"{server.url}/api/current-user/whoami")
        if whoami.status_code != 200:
            raise LabelStudioStartError(
                f"the legacy API token was refused ({whoami.status_code}): {whoami.text[:200]}"
            )


def stop_server(server: LabelStudioServer) -> None:
    """Stop the server this module started, by its PID (see :mod:`devstack.supervisor`)."""
    server.service.stop(STOP_TIMEOUT)

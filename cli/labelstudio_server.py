"""Start and stop one real Label Studio server from its own virtualenv, offline, on 127.0.0.1.

Used by ``ls-panoptic up --demo`` and by the end-to-end tests. The server runs from the
virtualenv made by ``.ci/install-label-studio`` (``$LS_VENV`` or ``<repo>/.venv-labelstudio``:
Label Studio pins library versions that must stay out of the project's environment), binds to
127.0.0.1 on a free port, keeps every byte of state (SQLite, media, secret key, home) under one
folder, runs in a session of its own (a Ctrl-C in the terminal does not reach it) and is
stopped by the PID this module started, never by name.

Facts about Label Studio 1.23.2 behind the choices here are listed in the docstring of
``tests/e2e/conftest.py``. Two matter most: the initial user, its password and its legacy API
token are applied only when the data folder is new (a restart on an existing folder keeps the
old ones), and a taken port is not an error (it silently moves on), hence the version check.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "LS_VERSION",
    "Credentials",
    "LabelStudioServer",
    "LabelStudioStartError",
    "default_venv",
    "free_port",
    "label_studio_binary",
    "log_tail",
    "start_server",
    "stop_server",
]

#: the Label Studio release the project is tested against
LS_VERSION = "1.23.2"
#: seconds to wait for /health; the first start runs every migration (about 30-45 s here)
DEFAULT_START_TIMEOUT = 180.0
#: seconds between /health polls
POLL_INTERVAL = 0.5
#: seconds to wait after SIGTERM before SIGKILL
STOP_TIMEOUT = 30.0

REPO_ROOT = Path(__file__).resolve().parents[1]


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
        log_path: the server's combined stdout and stderr.
        process: the ``label-studio start`` process this module started.
        startup_seconds: from spawn to the first healthy answer.
    """

    url: str
    token: str = dataclasses.field(repr=False)
    username: str
    password: str = dataclasses.field(repr=False)
    data_dir: Path
    files_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    startup_seconds: float

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def default_venv() -> Path:
    """The Label Studio virtualenv: ``$LS_VENV`` or ``<repo>/.venv-labelstudio``."""
    return Path(os.environ.get("LS_VENV") or REPO_ROOT / ".venv-labelstudio")


def label_studio_binary(venv: Path) -> Path | None:
    """The ``label-studio`` console script of ``venv``, or ``None`` when it is not installed."""
    binary = venv / "bin" / "label-studio"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


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
        _wait_healthy(server, started + timeout)
        _check_version_and_token(server)
    except BaseException:
        stop_server(server)
        raise
    elapsed = time.monotonic() - started
    return dataclasses.replace(server, startup_seconds=elapsed)


def _spawn(binary: Path, root: Path, credentials: Credentials) -> LabelStudioServer:
    """``label-studio start`` on a free port, in a session of its own, output to its log."""
    url = f"http://127.0.0.1:{free_port()}"
    log_path = root / "label-studio.log"
    command = [
        str(binary), "start", "--no-browser",
        "--internal-host", "127.0.0.1",  # bind address; --host is only the public URL
        "--port", url.rsplit(":", 1)[1],
        "--host", url,
        "--data-dir", str(root / "data"),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=_server_env(root, credentials),
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return LabelStudioServer(
        url, credentials.token, credentials.username, credentials.password,
        root / "data", root / "files", log_path, process, 0.0,
    )  # fmt: skip


def _wait_healthy(server: LabelStudioServer, deadline: float) -> None:
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise LabelStudioStartError(
                    f"label-studio exited with code {server.process.returncode} before it was "
                    f"healthy; log {server.log_path}:\n{log_tail(server.log_path)}"
                )
            try:
                if client.get(f"{server.url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(POLL_INTERVAL)
    raise LabelStudioStartError(
        f"label-studio was not healthy at {server.url}/health in time; "
        f"log {server.log_path}:\n{log_tail(server.log_path)}"
    )


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
    """SIGTERM the process this module started (by PID), then SIGKILL after a grace period."""
    process = server.process
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)

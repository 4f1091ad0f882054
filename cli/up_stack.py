"""The processes of ``ls-panoptic up``: Redis (when none answers), the backend and a worker.

Every process is started in a session of its own (a Ctrl-C in the terminal reaches ``up``
only, which then stops them in order) with its output in one log file, and is stopped by the
PID ``up`` started: SIGTERM, a grace period, then SIGKILL to it and its descendants (found
through ``/proc``), never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from rq import Queue, Worker

from .labelstudio_server import free_port

__all__ = [
    "Service",
    "Stack",
    "StepFailed",
    "ensure_redis",
    "ls_panoptic_command",
    "service_env",
    "spawn",
    "start_backend",
    "start_worker",
]

#: seconds a process gets after SIGTERM before SIGKILL
STOP_TIMEOUT = 20.0
#: seconds Redis, the backend and the worker get to answer after they were started
READY_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
#: the variables the service reads; ``service_env`` sets them, never inherits them
_SERVICE_VARIABLES = (
    "REDIS_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "WEBHOOK_TOKEN", "API_TOKEN",
)  # fmt: skip


class StepFailed(Exception):
    """A step of ``up`` failed; ``log`` is the log of the process to blame, if any."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass
class Service:
    """One process ``up`` started."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, then SIGKILL the process and whatever it forked."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in _descendants(self.pid):
                _kill(pid)
            self.process.kill()
            self.process.wait(timeout=timeout)


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren... of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Stack:
    """The services of one run, in start order; stopped in reverse order."""

    services: list[Service] = field(default_factory=list)

    def add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def check(self) -> None:
        """Raise :class:`StepFailed` naming the first service that exited."""
        for service in self.services:
            code = service.process.poll()
            if code is not None:
                raise StepFailed(f"{service.name} exited with code {code}", service.log)

    def stop_all(self, report: Callable[[str], None]) -> None:
        for service in reversed(self.services):
            code = service.process.poll()
            service.stop()
            name = f"{service.name} (pid {service.pid})"
            report(f"stopped {name}" if code is None else f"{name} had exited with code {code}")
        self.services.clear()


def spawn(
    name: str, command: list[str], env: Mapping[str, str], log: Path, cwd: Path | None = None
) -> Service:
    """Start ``command`` in its own session with stdout and stderr in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return Service(name, process, log)


def ls_panoptic_command() -> list[str]:
    """How to run this project's CLI in a child process (the console script of this venv)."""
    script = Path(sys.executable).with_name("ls-panoptic")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def service_env(settings: Mapping[str, str], *, inherit_options: bool) -> dict[str, str]:
    """The caller's environment without the service's variables, plus ``settings``.

    ``inherit_options`` keeps the caller's ``LS_PANOPTIC_*`` options (not in the demo, whose
    result must equal a batch conversion with default options).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _SERVICE_VARIABLES
        and (inherit_options or not name.startswith("LS_PANOPTIC_"))
    }
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, ValueError):
        return False
    finally:
        client.close()


def ensure_redis(url: str, folder: Path, stack: Stack) -> tuple[str, Service | None]:
    """``url`` when a Redis answers there; else a ``redis-server`` started on a free port
    (no persistence, files under ``folder``, added to ``stack``) and its URL."""
    if _redis_answers(url):
        return url, None
    binary = shutil.which("redis-server")
    if binary is None:
        raise StepFailed(
            f"no Redis answers at {url} and redis-server is not installed: run `make redis` "
            "(or apt-get install redis-server), or set REDIS_URL"
        )
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
               "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "")}
    service = stack.add(spawn("redis-server", command, env, folder / "redis.log"))
    started_url = f"redis://127.0.0.1:{port}/0"
    _wait(service, lambda: _redis_answers(started_url), f"Redis on port {port}")
    return started_url, service


def _wait(service: Service, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        code = service.process.poll()
        if code is not None:
            raise StepFailed(f"{service.name} exited with code {code} at start", service.log)
        if time.monotonic() > deadline:
            raise StepFailed(f"{what} did not come up in {READY_TIMEOUT:.0f} s", service.log)
        time.sleep(POLL_INTERVAL)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def start_backend(stack: Stack, env: Mapping[str, str], port: int, log: Path) -> Service:
    """``ls-panoptic serve`` on 127.0.0.1:``port`` (added to ``stack`` at once, so that it
    is stopped whatever happens next); ready when ``/health`` answers 200."""
    if _answers(port):  # else /health could be answered by someone else's server
        raise StepFailed(f"port {port} is taken by another server: choose another --port")
    command = [*ls_panoptic_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--threads", "4"]  # fmt: skip
    service = stack.add(spawn("backend", command, env, log))
    service.url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{service.url}/health", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False

    _wait(service, healthy, f"the backend at {service.url}")
    return service


def start_worker(
    stack: Stack, env: Mapping[str, str], redis_url: str, queue: str, log: Path
) -> Service:
    """``ls-panoptic worker --with-scheduler`` (added to ``stack`` at once); ready once
    registered on ``queue``."""
    command = [*ls_panoptic_command(), "worker", "--with-scheduler"]
    service = stack.add(spawn("worker", command, env, log))
    connection = redis.Redis.from_url(redis_url)
    try:
        rq_queue = Queue(queue, connection=connection)
        _wait(service, lambda: bool(Worker.all(queue=rq_queue)), f"a worker on queue {queue}")
    finally:
        connection.close()
    return service

"""The live service's processes in the end-to-end tests, and what faults are injected into.

- :func:`service_process`: ``ls-panoptic serve`` or ``worker`` as a child process run by
  :mod:`devstack.supervisor` (a session of its own, stopped by its PID: SIGTERM, then SIGKILL of
  what is left of that session, each process by its PID: rq's work-horse runs in a process
  group of its own); :func:`backend_process` waits until the backend is healthy,
  :func:`worker_process` runs ``worker --with-scheduler``; :func:`service_env` is the
  environment that gives them settings.
- :class:`RedisServer`: a ``redis-server`` of the test's own (AOF on) on a free port, which the
  test may stop and start again; never the machine's shared Redis.
- :class:`TcpGate`: a TCP relay in front of Label Studio that a test closes (connections refused,
  open ones cut) and opens again on the same port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from devstack import redis_server
from devstack.services import ls_panoptic_command, start_backend
from devstack.services import service_env as process_env
from devstack.supervisor import (
    Stack,
    SupervisorError,
    free_port,
    kill_session,
    poll_until,
    session_pids,
    spawn,
)
from worker.settings import Settings

__all__ = [
    "REPO",
    "RedisServer",
    "TcpGate",
    "backend_process",
    "free_port",
    "kill_session",
    "service_env",
    "service_process",
    "session_pids",
    "wait_until",
    "worker_process",
]

REPO = Path(__file__).resolve().parents[2]
#: seconds a service process gets to stop on SIGTERM (rq finishes its job) before SIGKILL
STOP_TIMEOUT = 60.0


def service_env(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that gives the service's commands ``settings`` (plus ``extra``)."""
    env = {
        "REDIS_URL": settings.redis_url,
        "LABEL_STUDIO_URL": str(settings.label_studio_url),
        "LABEL_STUDIO_API_KEY": str(settings.label_studio_api_key),
        "LS_PANOPTIC_QUEUE": settings.queue_name,
        "LS_PANOPTIC_KEY_PREFIX": settings.key_prefix,
        "LS_PANOPTIC_RESYNC_INTERVAL": str(settings.resync_interval),
    }
    if settings.retry_intervals:
        env["LS_PANOPTIC_RETRY_INTERVALS"] = ",".join(map(str, settings.retry_intervals))
    tokens = {"WEBHOOK_TOKEN": settings.webhook_token, "API_TOKEN": settings.api_token}
    env.update({name: value for name, value in tokens.items() if value})
    return {**env, **(extra or {})}


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    if not poll_until(condition, timeout, interval):
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)


@contextmanager
def service_process(
    args: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic ARGS...`` in a new session (its children, rq's work-horse and scheduler
    or gunicorn's workers, share it), with only ``env``'s service settings; stopped on exit."""
    command, child_env = [*ls_panoptic_command(), *args], process_env(env, inherit_options=False)
    with Stack(STOP_TIMEOUT) as stack:
        yield stack.add(spawn(args[0], command, child_env, log, cwd=REPO, append=True)).popen


@contextmanager
def backend_process(
    settings: Settings, port: int, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic serve`` (gunicorn, one process) on 127.0.0.1:``port``, healthy."""
    env = process_env(service_env(settings, extra), inherit_options=False)
    options = ["--workers", "1", "--threads", "4"]
    with Stack(STOP_TIMEOUT) as stack:
        try:
            backend = start_backend(stack, env, port, log, options, cwd=REPO, append=True)
        except SupervisorError as exc:
            pytest.fail(f"{exc}; log {log}", pytrace=False)
        yield backend.popen


@contextmanager
def worker_process(
    settings: Settings, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic worker --with-scheduler`` (rq's forking worker)."""
    args = ["worker", "--with-scheduler"]
    with service_process(args, service_env(settings, extra), log) as process:
        yield process


class RedisServer(redis_server.RedisServer):
    """Our own ``redis-server`` (AOF on, fsync every second) on a free port, data in
    ``folder`` (removed at the end); stopped by its PID with SIGTERM (Redis writes the AOF out
    and exits), and started again on the same port by :meth:`start`."""

    def __init__(self, binary: str, folder: Path) -> None:
        super().__init__(binary, folder, aof=True)

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class TcpGate:
    """127.0.0.1:``port`` forwarding to ``upstream``; :meth:`close` refuses new connections and
    cuts the open ones, :meth:`open` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.port = upstream, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            self._listener.close()
            self._listener = None
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> TcpGate:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            with self._lock:
                self._open.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)

"""The live service's processes in the end-to-end tests, and what faults are injected into.

- :func:`service_process`: ``ls-panoptic serve`` or ``worker`` as a child process in a session of
  its own, stopped by its PID (SIGTERM, then SIGKILL of what is left of that session, each
  process by its PID: rq's work-horse runs in a process group of its own);
  :func:`backend_process` waits until the backend is healthy, :func:`worker_process` runs
  ``worker --with-scheduler``; :func:`service_env` is the environment that gives them settings.
- :class:`RedisServer`: a ``redis-server`` of the test's own (AOF on) on a free port, which the
  test may stop and start again; never the machine's shared Redis.
- :class:`TcpGate`: a TCP relay in front of Label Studio that a test closes (connections refused,
  open ones cut) and opens again on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import redis

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
    "stop_process",
    "wait_healthy",
    "wait_until",
    "worker_process",
]

REPO = Path(__file__).resolve().parents[2]
#: seconds ``ls-panoptic serve`` may take to answer /health
BACKEND_START_TIMEOUT = 60.0
#: seconds a service process gets to stop on SIGTERM (rq finishes its job) before SIGKILL
STOP_TIMEOUT = 60.0
#: settings a service process must get from its test only, never from the caller's environment
_SERVICE_VARIABLES = frozenset(
    {"REDIS_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "WEBHOOK_TOKEN", "API_TOKEN"}
)


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(interval)


@contextmanager
def service_process(
    args: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic ARGS...`` in a new session (its children, rq's work-horse and scheduler
    or gunicorn's workers, share it), with only ``env``'s service settings; stopped on exit."""
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LS_PANOPTIC_") and k not in _SERVICE_VARIABLES
    }
    command = [sys.executable, "-c", "from cli.main import main; main()", *args]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env={**inherited, **env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process (rq: warm shutdown; gunicorn: graceful), then SIGKILL whatever is
    left of the session it leads (rq's work-horse has a process group of its own)."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    kill_session(process.pid)
    process.wait(timeout=timeout)


def session_pids(session: int) -> list[int]:
    """PIDs of the live processes of ``session`` (a session this test started: its leader's
    PID), from /proc; zombies count as gone."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            # after "pid (comm)": state, ppid, pgrp, session, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return sorted(found)


def kill_session(session: int) -> list[int]:
    """SIGKILL every process of ``session``, each by its PID; returns the PIDs signalled."""
    pids = session_pids(session)
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@contextmanager
def backend_process(
    settings: Settings, port: int, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic serve`` (gunicorn, one process) on 127.0.0.1:``port``, healthy."""
    args = ["serve", "--port", str(port), "--workers", "1", "--threads", "4"]
    with service_process(args, service_env(settings, extra), log) as process:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        yield process


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``url/health`` answers 200 (the backend reaches Redis)."""

    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the backend exited ({process.returncode}); log {log}", pytrace=False)
        with suppress(httpx.HTTPError):
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        return False

    wait_until(healthy, BACKEND_START_TIMEOUT, f"the backend at {url} ({log})")


@contextmanager
def worker_process(
    settings: Settings, log: Path, extra: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``ls-panoptic worker --with-scheduler`` (rq's forking worker)."""
    args = ["worker", "--with-scheduler"]
    with service_process(args, service_env(settings, extra), log) as process:
        yield process


class RedisServer:
    """Our own ``redis-server`` (AOF on, fsync every second) on a free port, data in
    ``folder``; stopped by its PID with SIGTERM (Redis writes the AOF out and exits)."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True)

    def start(self) -> None:
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, start_new_session=True)
        client = redis.Redis(port=self.port, socket_timeout=2)

        def answers() -> bool:
            with suppress(redis.RedisError):  # refused, or still LOADING the AOF
                return bool(client.ping())
            return False

        wait_until(answers, 30, f"redis-server on port {self.port}")
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            if self.process is not None:
                kill_session(self.process.pid)
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

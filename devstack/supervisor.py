"""The one process supervisor of the dev stack: ``up``, the end-to-end tests and the benchmarks.

Every process is started in a session of its own (a Ctrl-C in the terminal reaches only its
parent, which then stops them in order) with stdout and stderr in one log file, and is stopped
by the PID it was started with: SIGTERM, a grace period, then SIGKILL to every process still in
its session, each by its PID (found in ``/proc``: gunicorn's workers, rq's work-horse, which has
a process group of its own, and orphans alike), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "NotReady",
    "Process",
    "ProcessExited",
    "Stack",
    "SupervisorError",
    "free_port",
    "http_ok",
    "kill_session",
    "log_tail",
    "poll_until",
    "port_answers",
    "run_command",
    "session_pids",
    "spawn",
]

#: seconds a process gets after SIGTERM before what is left of its session is SIGKILLed
STOP_TIMEOUT = 20.0
#: seconds between two readiness checks
POLL_INTERVAL = 0.2


class SupervisorError(Exception):
    """A supervised process failed; ``log`` is its log file."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class ProcessExited(SupervisorError):
    """The process exited while it was expected to run."""


class NotReady(SupervisorError):
    """The process runs but was not ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET url`` answers 200 (no answer at all counts as no)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


def poll_until(
    condition: Callable[[], bool], timeout: float, interval: float = POLL_INTERVAL
) -> bool:
    """Call ``condition`` until it is true (``True``) or ``timeout`` seconds passed (``False``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def session_pids(session: int) -> list[int]:
    """PIDs of the live processes of ``session`` (its leader's PID), from ``/proc``; zombies
    count as gone."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # after "pid (comm)": state, ppid, pgrp, session, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return sorted(found)


def kill_session(session: int) -> list[int]:
    """SIGKILL every process of ``session``, each by its PID; returns the PIDs signalled."""
    pids = session_pids(session)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


@dataclass
class Process:
    """One process started by :func:`spawn`, leader of its own session."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str | None = None
    stopped: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """Its exit code, or ``None`` while it runs."""
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        """Raise :class:`ProcessExited` if it has exited."""
        code = self.popen.poll()
        if code is not None:
            raise ProcessExited(f"{self.name} exited with code {code}", self.log)

    def wait_ready(
        self,
        ready: Callable[[], bool],
        what: str,
        timeout: float,
        interval: float = POLL_INTERVAL,
    ) -> None:
        """Poll ``ready`` until true; :class:`ProcessExited` if the process exits first,
        :class:`NotReady` (naming ``what``) after ``timeout`` seconds."""

        def done() -> bool:
            code = self.popen.poll()
            if code is not None:
                raise ProcessExited(f"{self.name} exited with code {code} at start", self.log)
            return ready()

        if not poll_until(done, timeout, interval):
            raise NotReady(f"{what} did not come up in {timeout:.0f} s", self.log)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL what is left of its session.
        Once only: later calls do nothing (its PID may have been reused since)."""
        if self.stopped:
            return
        if self.popen.poll() is None:
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        kill_session(self.pid)
        self.popen.wait(timeout=timeout)
        poll_until(lambda: not session_pids(self.pid), timeout, 0.05)  # SIGKILL lands late
        self.stopped = True


def spawn(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    cwd: Path | None = None,
    append: bool = False,
) -> Process:
    """Start ``command`` in a session of its own, stdout and stderr to ``log`` (appended to
    with ``append``, else truncated), stdin from ``/dev/null``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab" if append else "wb") as out:
        popen = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return Process(name, popen, log)


def run_command(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    timeout: float,
    *,
    cwd: Path | None = None,
) -> int:
    """Run ``command`` as :func:`spawn` does, to its end; its exit code. After ``timeout``
    seconds it is stopped and :class:`NotReady` raised."""
    process = spawn(name, command, env, log, cwd=cwd)
    try:
        return process.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NotReady(f"{name} took over {timeout:.0f} s", log) from exc
    finally:
        process.stop()


@dataclass
class Stack:
    """Processes started together, stopped in reverse order (on leaving a ``with`` block, or
    by :meth:`stop_all`)."""

    stop_timeout: float = STOP_TIMEOUT
    processes: list[Process] = field(default_factory=list)

    def add(self, process: Process) -> Process:
        """Own ``process`` (as soon as it is spawned: stopped whatever happens next)."""
        self.processes.append(process)
        return process

    def check(self) -> None:
        """Raise :class:`ProcessExited` naming the first process that exited."""
        for process in self.processes:
            process.check()

    def stop_all(self, report: Callable[[str], None] | None = None) -> None:
        """Stop every process, last started first; ``report`` gets one line each."""
        for process in reversed(self.processes):
            code = process.poll()
            process.stop(self.stop_timeout)
            name = f"{process.name} (pid {process.pid})"
            if report is not None:
                report(f"stopped {name}" if code is None else f"{name} had exited with code {code}")
        self.processes.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

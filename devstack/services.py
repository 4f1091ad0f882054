"""The ls-panoptic service as processes: the backend (``serve``), a worker, and one-shot
commands (``connect``, ``convert``), each run by this environment's console script with only
the settings its caller gives it."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis
from rq import Worker

from worker.jobqueue import make_queue

from .supervisor import Process, Stack, http_ok, run_command, spawn

__all__ = [
    "SERVICE_VARIABLES",
    "ls_panoptic_command",
    "run_ls_panoptic",
    "service_env",
    "start_backend",
    "start_worker",
]

#: seconds the backend and the worker get to be ready after they were started
READY_TIMEOUT = 60.0
#: the variables the service reads its settings from; never inherited by its processes
SERVICE_VARIABLES = (
    "REDIS_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "WEBHOOK_TOKEN", "API_TOKEN",
)  # fmt: skip


def ls_panoptic_command() -> list[str]:
    """How to run this project's CLI in a child process (the console script of this venv)."""
    script = Path(sys.executable).with_name("ls-panoptic")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


def service_env(settings: Mapping[str, str], *, inherit_options: bool) -> dict[str, str]:
    """The caller's environment without the service's variables, plus ``settings``.

    ``inherit_options`` keeps the caller's ``LS_PANOPTIC_*`` options (not in the demo, the
    tests and the benchmarks, whose processes get exactly the options they are given).
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SERVICE_VARIABLES
        and (inherit_options or not name.startswith("LS_PANOPTIC_"))
    }
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_backend(
    stack: Stack,
    env: Mapping[str, str],
    port: int,
    log: Path,
    options: Sequence[str] = (),
    *,
    cwd: Path | None = None,
    append: bool = False,
) -> Process:
    """``ls-panoptic serve`` on 127.0.0.1:``port`` (plus ``options``), in ``stack``; returns
    once ``/health`` answers 200. Raises a ``SupervisorError`` if it exits or never does."""
    command = [*ls_panoptic_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
               *options]  # fmt: skip
    process = stack.add(spawn("backend", command, env, log, cwd=cwd, append=append))
    process.url = f"http://127.0.0.1:{port}"
    health = f"{process.url}/health"
    process.wait_ready(lambda: http_ok(health), f"the backend at {process.url}", READY_TIMEOUT)
    return process


def start_worker(
    stack: Stack,
    env: Mapping[str, str],
    log: Path,
    registered_on: tuple[redis.Redis, str] | None = None,
    *,
    cwd: Path | None = None,
    append: bool = False,
) -> Process:
    """``ls-panoptic worker --with-scheduler`` in ``stack``; with ``registered_on`` (a
    connection and a queue name), returns once a worker listens on that queue."""
    command = [*ls_panoptic_command(), "worker", "--with-scheduler"]
    process = stack.add(spawn("worker", command, env, log, cwd=cwd, append=append))
    if registered_on is not None:
        connection, name = registered_on
        queue = make_queue(connection, name)

        def listening() -> bool:
            return Worker.count(connection=connection, queue=queue) > 0

        process.wait_ready(listening, f"a worker on queue {name}", READY_TIMEOUT)
    return process


def run_ls_panoptic(args: Sequence[str], env: Mapping[str, str], log: Path, timeout: float) -> int:
    """``ls-panoptic ARGS...`` to its end, output to ``log``; its exit code (a
    ``SupervisorError`` after ``timeout`` seconds)."""
    command = [*ls_panoptic_command(), *args]
    return run_command(f"ls-panoptic {args[0]}", command, env, log, timeout)

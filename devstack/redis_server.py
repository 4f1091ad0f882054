"""A throwaway ``redis-server`` of our own on a free port of 127.0.0.1, data in one folder.

``up`` starts one (no persistence) when no Redis answers at ``REDIS_URL``; the fault tests
start one with AOF on and stop and start it again on the same port, mid-burst.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis

from .supervisor import Process, Stack, SupervisorError, free_port, spawn

__all__ = ["RedisServer", "redis_answers", "redis_server_binary"]

#: seconds a started server gets to answer PING (it may be LOADING its AOF)
START_TIMEOUT = 60.0
#: seconds Redis gets after SIGTERM (it writes its AOF out) before SIGKILL
STOP_TIMEOUT = 30.0


def redis_answers(url: str) -> bool:
    """Whether a Redis at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, ValueError):
        return False
    finally:
        client.close()


def redis_server_binary() -> str | None:
    """The ``redis-server`` on the PATH, or ``None``."""
    return shutil.which("redis-server")


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` (default: a free one) with its files and its
    log (``redis.log``) in ``folder``; ``aof``: append-only file, fsynced every second.
    :meth:`start` may follow :meth:`stop` (same port, same data)."""

    def __init__(
        self, binary: str, folder: Path, *, port: int | None = None, aof: bool = False
    ) -> None:
        self.binary, self.folder, self.aof = binary, folder, aof
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    def _command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else [
            "--appendonly", "no"
        ]  # fmt: skip
        return [
            self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
            *persistence, "--dir", str(self.folder),
        ]  # fmt: skip

    def start(self, stack: Stack | None = None, timeout: float = START_TIMEOUT) -> Process:
        """Start it (added to ``stack`` at once, if given) and wait until it answers PING;
        raises a ``SupervisorError`` if it does not (then stopped, unless in ``stack``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", "")}
        restart = self.process is not None  # the log of the first start goes on
        process = spawn("redis-server", self._command(), env, self.folder / "redis.log",
                        append=restart)  # fmt: skip
        self.process = process if stack is None else stack.add(process)
        try:
            process.wait_ready(lambda: redis_answers(self.url), f"Redis on port {self.port}",
                               timeout)  # fmt: skip
        except SupervisorError:
            if stack is None:
                process.stop(STOP_TIMEOUT)
            raise
        return process

    def stop(self) -> None:
        """SIGTERM (Redis writes its AOF out and exits), SIGKILL after :data:`STOP_TIMEOUT`."""
        if self.process is not None:
            self.process.stop(STOP_TIMEOUT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""The state of one ``ls-panoptic up`` run: its random ids and tokens, what it started, what
it printed. Shared by the stack steps (:mod:`devstack.stack`) and the demo steps
(:mod:`devstack.demo`)."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rich.console import Console
from rich.markup import escape

from .labelstudio import Credentials
from .supervisor import Stack

__all__ = ["Run", "mask", "purge_run_keys"]


def mask(token: str) -> str:
    """A secret as it may be printed: its first four characters and its length."""
    return f"{token[:4]}… ({len(token)} chars)"


@dataclass
class Run:
    """One run. A demo run's key prefix and queue carry ``run_id`` (random hex), so that its
    Redis keys can be told from anyone else's and deleted at the end; otherwise the service
    keeps its configured ones (``queue`` is then the configured queue name)."""

    output: Path
    console: Console
    steps: int
    demo: bool
    queue: str = ""
    run_id: str = field(default_factory=lambda: secrets.token_hex(6))
    stack: Stack = field(default_factory=Stack)
    webhook_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    redis_url: str = ""
    purge_keys: bool = False
    backend_url: str = ""
    done: int = 0
    current: str = ""

    def __post_init__(self) -> None:
        if self.demo:
            self.queue = f"ls-panoptic-demo-{self.run_id}"

    @property
    def key_prefix(self) -> str | None:
        return f"lsp-demo-{self.run_id}" if self.demo else None

    @property
    def logs(self) -> Path:
        return self.output / "logs"

    @property
    def service_env_path(self) -> Path:
        return self.output / "service.env"

    def step(self, text: str) -> None:
        """Print the next numbered step."""
        self.done += 1
        self.current = f"step {self.done}/{self.steps} ({text})"
        self.console.print(f"[bold cyan]{self.done}/{self.steps}[/] [bold]{text}[/]")

    def note(self, text: str) -> None:
        """Print an indented detail line (rich markup allowed)."""
        self.console.print(f"    {text}", highlight=False)

    def service_settings(self, ls_url: str, ls_key: str) -> dict[str, str]:
        """The environment of the backend and the worker (see ``worker.settings``)."""
        settings = {
            "REDIS_URL": self.redis_url,
            "LABEL_STUDIO_URL": ls_url,
            "LABEL_STUDIO_API_KEY": ls_key,
            "WEBHOOK_TOKEN": self.webhook_token,
            "API_TOKEN": self.api_token,
        }
        if self.key_prefix is None:  # the configured service: its own LS_PANOPTIC_* settings
            return settings
        return {
            **settings,
            "LS_PANOPTIC_KEY_PREFIX": self.key_prefix,
            "LS_PANOPTIC_QUEUE": self.queue,
            "LS_PANOPTIC_SNAPSHOT_DIR": str((self.output / "snapshot-tmp").resolve()),
        }

    def write_service_env(self, settings: dict[str, str]) -> Path:
        """The settings as ``NAME=value`` lines, mode 600: ``set -a; . service.env`` lets
        ``ls-panoptic snapshot``/``resync`` and curl talk to the running stack."""
        path = self.service_env_path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.writelines(f"{name}={value}\n" for name, value in settings.items())
        return path

    def summary(
        self, ls_url: str, login: Credentials | None, project: int | None, keep: bool
    ) -> None:
        """Where everything is: URLs, login, files."""
        out, o = self.note, self.output
        held = "running until Ctrl-C" if keep else "stopping now; --keep-running keeps it up"
        self.console.print(f"[bold]summary[/] ({held})")
        user = f"   login {login.username} / {login.password}" if login else ""
        out(f"Label Studio  {ls_url}{user}")
        if project is not None:
            out(f"  project     {ls_url}/projects/{project}")
        out(f"backend       {self.backend_url}   POST /webhook; GET /projects/<id>/snapshot.pkl "
            "with Authorization: Bearer $API_TOKEN")  # fmt: skip
        out(f"dashboard     {self.backend_url}/rq   any user name, API_TOKEN as the password")
        if keep:
            out(f"settings      {self.service_env_path}   set -a; . {self.service_env_path}")
        if project is not None:
            out(f"snapshot      {o}/live/panoptic_gt.pkl (+ .meta.json), previews in {o}/previews/")
            out(f"batch         {o}/batch/export.json (Label Studio's export) -> panoptic_gt.pkl")
        else:
            out(f"next          ls-panoptic connect --project ID --url {self.backend_url}, then "
                "ls-panoptic resync --project ID --wait")  # fmt: skip
        out(f"logs          {self.logs}/")
        if login:
            out(f"Label Studio's data stays in {o}/label-studio/ (its next start takes seconds)")

    def shut_down(self) -> None:
        """Stop every process (by PID), delete the run's Redis keys and its settings file."""
        self.stack.stop_all(lambda line: self.note(f"[dim]{escape(line)}[/]"))
        if self.purge_keys:
            with contextlib.suppress(redis.RedisError):  # best effort: Redis may be gone
                if count := purge_run_keys(self.redis_url, self.run_id):
                    self.note(f"[dim]deleted this run's {count} Redis keys[/]")
        self.service_env_path.unlink(missing_ok=True)


def purge_run_keys(redis_url: str, run_id: str) -> int:
    """Delete every key of one demo run (its key prefix, rq queue, registries and jobs all
    contain ``run_id``, a random hex string, and so do its workers' queue lists); returns
    how many."""
    connection = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        keys = list(connection.scan_iter(match=f"*{run_id}*", count=1000))
        keys += [
            key
            for key in connection.scan_iter(match="rq:worker:*", count=1000)
            if connection.type(key) == b"hash"
            and run_id.encode() in (connection.hget(key, "queues") or b"")
        ]
        for start in range(0, len(keys), 500):
            connection.delete(*keys[start : start + 500])
        for member in connection.smembers("rq:queues"):
            if run_id.encode() in member:
                connection.srem("rq:queues", member)
        return len(keys)
    finally:
        connection.close()

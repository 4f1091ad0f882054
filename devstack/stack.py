"""What ``ls-panoptic up`` does: the whole live stack on this machine, without Docker.

Redis (the one at REDIS_URL, or a ``redis-server`` started on a free port), the backend
(``ls-panoptic serve``) and a worker (``ls-panoptic worker --with-scheduler``), each a process
of its own with its log under ``<output-dir>/logs/``. With a demo also a Label Studio 1.23.2
(or the one given by URL), a project annotated through its API so that its webhooks fill the
store, and the proof: the snapshot downloaded from the backend equals, bit for bit, the batch
conversion of Label Studio's own export (see :mod:`devstack.demo`).

A demo run keeps to itself: random WEBHOOK_TOKEN and API_TOKEN (printed as a prefix only; the
full values are in ``<output-dir>/service.env``, mode 600, while the stack runs), and a key
prefix and queue named after a random run id, whose keys are deleted at the end. Everything
``up`` started is stopped by PID when it ends: at once, or on Ctrl-C when kept running.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from rich.console import Console
from rich.markup import escape

from worker.settings import Settings, SettingsError

from .demo import DemoOptions, run_demo
from .demo_labelstudio import LabelStudioAccess, bring_up_label_studio
from .redis_server import RedisServer, redis_answers, redis_server_binary
from .run import Run, mask
from .services import service_env, start_backend, start_worker
from .steps import StepFailed
from .supervisor import Process, SupervisorError, free_port, log_tail, port_answers

__all__ = ["DEFAULT_REDIS_URL", "Options", "execute"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_TAIL_LINES = 25
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _ensure_redis(run: Run, url: str) -> tuple[str, Process | None]:
    """``url`` when a Redis answers there; else a ``redis-server`` of this run on a free port
    (no persistence, files under ``<output-dir>/redis``, in the run's stack) and its URL."""
    if redis_answers(url):
        return url, None
    binary = redis_server_binary()
    if binary is None:
        raise StepFailed(
            f"no Redis answers at {url} and redis-server is not installed: run `make redis` "
            "(or apt-get install redis-server), or set REDIS_URL"
        )
    server = RedisServer(binary, run.output / "redis")
    return server.url, server.start(run.stack)


def _bring_up_redis(run: Run, redis_url: str) -> None:
    run.step("Redis")
    url, server = _ensure_redis(run, redis_url)
    run.redis_url = url
    if server is not None:
        run.note(f"none answered at {redis_url}: started redis-server (pid {server.pid}) at {url}")
    elif run.demo:
        run.purge_keys = True
        run.note(f"{url} answers; this run's keys (prefix {run.key_prefix}, queue {run.queue}) "
                 "are deleted when it ends")  # fmt: skip
    else:
        run.note(f"{url} answers")


def _start_services(run: Run, env: dict[str, str], port: int) -> tuple[Process, Process]:
    """The backend on ``port`` (when nothing else answers there), then a worker."""
    if port_answers(port):  # else /health could be answered by someone else's server
        raise StepFailed(f"port {port} is taken by another server: choose another --port")
    single = ["--workers", "1", "--threads", "4"]
    backend = start_backend(run.stack, env, port, run.logs / "backend.log", single)
    connection = redis.Redis.from_url(run.redis_url)
    try:
        registered = (connection, run.queue)
        worker = start_worker(run.stack, env, run.logs / "worker.log", registered)
    finally:
        connection.close()
    return backend, worker


def _bring_up_services(run: Run, access: LabelStudioAccess, port: int) -> None:
    run.step("backend and worker")
    settings = run.service_settings(access.url, access.api_key)
    env = service_env(settings, inherit_options=not run.demo)
    backend, worker = _start_services(run, env, port or free_port())
    run.backend_url = backend.url or ""
    env_file = run.write_service_env(settings)
    run.note(f"backend {run.backend_url} (pid {backend.pid}): ls-panoptic serve")
    run.note(f"worker  pid {worker.pid}: ls-panoptic worker --with-scheduler, queue {run.queue}")
    run.note(f"WEBHOOK_TOKEN {mask(run.webhook_token)}, API_TOKEN {mask(run.api_token)} "
             f"(full values in {env_file} while the stack runs)")  # fmt: skip


def _configured_label_studio(run: Run, url: str | None, api_key: str | None) -> LabelStudioAccess:
    """Without ``--demo``: the configured Label Studio and tokens (``worker.settings``)."""
    try:
        settings = Settings.from_env()
        url, api_key = url or settings.label_studio_url, api_key or settings.label_studio_api_key
        if not url or not api_key:
            raise SettingsError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set")
    except SettingsError as exc:
        raise StepFailed(f"{exc} (or pass --label-studio-url/--api-key; or try --demo)") from exc
    run.queue = settings.queue_name
    run.webhook_token = settings.webhook_token or run.webhook_token
    run.api_token = settings.api_token or run.api_token
    return LabelStudioAccess(url.rstrip("/"), api_key)


def _hold(run: Run) -> None:
    """``--keep-running``: until Ctrl-C (or SIGTERM), or until one of the processes dies."""
    run.console.print("[bold]running[/]: press Ctrl-C to stop everything")
    try:
        while True:
            run.stack.check()
            time.sleep(1.0)
    except KeyboardInterrupt:
        run.console.print("stopping ...")


def _show_log(err: Console, log: Path | None) -> None:
    if log is None or not log.exists():
        return
    err.print(f"[dim]--- last lines of {log} ---[/]")
    err.print(escape(log_tail(log, _TAIL_LINES)), style="dim")
    err.print("[dim]---[/]")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the stack as Ctrl-C does (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Options:
    """What ``ls-panoptic up`` is asked for; ``demo`` is ``None`` without ``--demo``."""

    output_dir: Path
    redis_url: str
    label_studio_url: str | None
    api_key: str | None
    port: int
    keep_running: bool
    demo: DemoOptions | None


def _bring_up(run: Run, options: Options) -> None:
    _bring_up_redis(run, options.redis_url)
    if options.demo is not None:
        access = bring_up_label_studio(
            run, options.label_studio_url, options.api_key, options.demo.label_studio_venv
        )
    else:
        access = _configured_label_studio(run, options.label_studio_url, options.api_key)
    _bring_up_services(run, access, options.port)
    project = run_demo(run, access, options.demo) if options.demo is not None else None
    keep = options.keep_running or options.demo is None
    run.summary(access.url, access.login, project.id if project else None, keep)
    if keep:
        _hold(run)


def _up_then_down(run: Run, options: Options) -> int:
    """Bring everything up, then stop it all; the exit code."""
    failure: str | None = None
    code = 0
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with _sigterm_as_interrupt():
        try:
            _bring_up(run, options)
        except (StepFailed, SupervisorError) as exc:
            _show_log(err, exc.log)
            failure, code = f"ls-panoptic up failed at {run.current}: {exc}", EXIT_FAILED
        except KeyboardInterrupt:
            failure, code = "ls-panoptic up interrupted", EXIT_INTERRUPTED
        finally:
            run.shut_down()
    if failure is not None:
        err.print(f"[bold red]{escape(failure)}[/]")
    return code


def execute(options: Options) -> int:
    """``ls-panoptic up``: everything up, used, then stopped, printed as it goes; the exit code."""
    options.output_dir.mkdir(parents=True, exist_ok=True)
    console = Console(highlight=False, soft_wrap=True)
    demo = options.demo is not None
    run = Run(options.output_dir, console, steps=7 if demo else 2, demo=demo)
    started = time.monotonic()
    code = _up_then_down(run, options)
    console.print(f"[dim]ls-panoptic up: {time.monotonic() - started:.0f} s[/]")
    return code

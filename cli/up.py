"""``ls-panoptic up``: the whole live stack on this machine, without Docker.

Redis (the one at REDIS_URL, or a ``redis-server`` started on a free port), the backend
(``ls-panoptic serve``) and a worker (``ls-panoptic worker --with-scheduler``), each a process
of its own with its log under ``<output-dir>/logs/``. With ``--demo`` also a Label Studio
1.23.2 (or the one given by ``--label-studio-url``), a project annotated through its API so
that its webhooks fill the store, and the proof: the snapshot downloaded from the backend
equals, bit for bit, the batch conversion of Label Studio's own export (see ``cli.up_demo``).

A demo run keeps to itself: random WEBHOOK_TOKEN and API_TOKEN (printed as a prefix only; the
full values are in ``<output-dir>/service.env``, mode 600, while the stack runs), and a key
prefix and queue named after a random run id, whose keys are deleted at the end. Everything
``up`` started is stopped by PID when it ends: at once, or on Ctrl-C with ``--keep-running``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from worker.settings import Settings, SettingsError

from .labelstudio_server import free_port, log_tail
from .up_demo import DemoOptions, LabelStudioAccess, bring_up_label_studio, run_demo
from .up_run import Run, mask
from .up_stack import StepFailed, ensure_redis, service_env, start_backend, start_worker

__all__ = ["up"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_TAIL_LINES = 25
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _bring_up_redis(run: Run, redis_url: str) -> None:
    run.step("Redis")
    url, service = ensure_redis(redis_url, run.output / "redis", run.stack)
    run.redis_url = url
    if service is not None:
        run.note(f"none answered at {redis_url}: started redis-server (pid {service.pid}) at {url}")
    elif run.demo:
        run.purge_keys = True
        run.note(f"{url} answers; this run's keys (prefix {run.key_prefix}, queue {run.queue}) "
                 "are deleted when it ends")  # fmt: skip
    else:
        run.note(f"{url} answers")


def _bring_up_services(run: Run, access: LabelStudioAccess, port: int) -> None:
    run.step("backend and worker")
    settings = run.service_settings(access.url, access.api_key)
    env = service_env(settings, inherit_options=not run.demo)
    backend = start_backend(run.stack, env, port or free_port(), run.logs / "backend.log")
    worker = start_worker(run.stack, env, run.redis_url, run.queue, run.logs / "worker.log")
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


def _show_log(err: Console, exc: StepFailed) -> None:
    if exc.log is None or not exc.log.exists():
        return
    err.print(f"[dim]--- last lines of {exc.log} ---[/]")
    err.print(escape(log_tail(exc.log, _TAIL_LINES)), style="dim")
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
class _Options:
    redis_url: str
    label_studio_url: str | None
    api_key: str | None
    port: int
    keep_running: bool
    demo: DemoOptions | None


def _bring_up(run: Run, options: _Options) -> None:
    _bring_up_redis(run, options.redis_url)
    if options.demo is not None:
        access = bring_up_label_studio(run, options.label_studio_url, options.api_key)
    else:
        access = _configured_label_studio(run, options.label_studio_url, options.api_key)
    _bring_up_services(run, access, options.port)
    project = run_demo(run, access, options.demo) if options.demo is not None else None
    keep = options.keep_running or options.demo is None
    run.summary(access.url, access.login, project.id if project else None, keep)
    if keep:
        _hold(run)


def _execute(run: Run, options: _Options) -> int:
    """Bring everything up, then stop it all; the exit code."""
    failure: str | None = None
    code = 0
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    with _sigterm_as_interrupt():
        try:
            _bring_up(run, options)
        except StepFailed as exc:
            _show_log(err, exc)
            failure, code = f"ls-panoptic up failed at {run.current}: {exc}", EXIT_FAILED
        except KeyboardInterrupt:
            failure, code = "ls-panoptic up interrupted", EXIT_INTERRUPTED
        finally:
            run.shut_down()
    if failure is not None:
        err.print(f"[bold red]{escape(failure)}[/]")
    return code


@click.command("up")
@click.option(
    "--demo",
    is_flag=True,
    help="Also start Label Studio, annotate a synthetic project through its API, and check "
    "the live snapshot against a batch conversion of its export (what `make demo` runs).",
)
@click.option(
    "--redis-url",
    envvar="REDIS_URL",
    default=DEFAULT_REDIS_URL,
    show_default=True,
    help="The Redis to use (default: REDIS_URL); when none answers there, a redis-server is "
    "started on a free port for this run.",
)
@click.option(
    "--label-studio-url",
    default=None,
    help="A running Label Studio to use instead of starting one from .venv-labelstudio "
    "(it must reach 127.0.0.1). Without --demo the default is LABEL_STUDIO_URL.",
)
@click.option(
    "--api-key",
    envvar="LABEL_STUDIO_API_KEY",
    default=None,
    help="Its API key, a legacy token or personal access token (default: LABEL_STUDIO_API_KEY).",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Logs, Label Studio's data, the snapshot, the export, previews.",
)
@click.option("--images", "n_images", type=click.IntRange(2, 100), default=6, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Synthetic project seed.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Backend port (0: free).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Seconds the store may take to catch up with Label Studio.",
)
@click.option("--keep-running", is_flag=True, help="With --demo: keep it all up until Ctrl-C.")
def up(
    demo: bool,
    redis_url: str,
    label_studio_url: str | None,
    api_key: str | None,
    output_dir: Path,
    n_images: int,
    seed: int,
    port: int,
    timeout: float,
    keep_running: bool,
) -> None:
    """Bring the live stack up on this machine without Docker: Redis, the backend and a
    worker (and, with --demo, Label Studio plus a project annotated through its API); stop
    everything it started on exit, or on Ctrl-C with --keep-running (always, without --demo).

    \b
    make demo   runs   ls-panoptic up --demo   (about 30 s; the first start of Label
                Studio adds 30-60 s of database migrations)
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    demo_options = DemoOptions(n_images, seed, timeout) if demo else None
    options = _Options(redis_url, label_studio_url, api_key, port, keep_running, demo_options)
    console = Console(highlight=False, soft_wrap=True)
    run = Run(output_dir, console, steps=7 if demo else 2, demo=demo)
    started = time.monotonic()
    code = _execute(run, options)
    console.print(f"[dim]ls-panoptic up: {time.monotonic() - started:.0f} s[/]")
    if code:
        raise SystemExit(code)

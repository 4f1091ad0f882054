"""``ls-panoptic serve``: the webhook receiver, ML-backend and snapshot API, under gunicorn.

The app is built once, in the gunicorn master (so a bad setting stops the command with one
line before any worker starts), and forked into the workers; its Redis client connects lazily,
per worker. Workers are ``gthread`` with one thread by default: threads of one process share
its interpreter lock, and a CPU-bound acknowledgement (a 268 KB body) then waits behind its
siblings, so the default is more processes instead (CPUs + 1; a snapshot download, written to
a temporary file then streamed, holds one worker while ``/webhook`` must answer within 1 s).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication

from backend.app import create_app
from worker.settings import Settings, SettingsError

__all__ = ["GunicornApp", "serve"]

logger = logging.getLogger("ls_panoptic.backend")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: gunicorn processes by default: one per CPU, plus one to answer webhooks while another
#: streams a snapshot
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1


class GunicornApp(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """Runs an already built WSGI app with the given gunicorn settings (no config file)."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.application


#: where gunicorn's workers touch their heartbeat file, when it exists: a memory filesystem, as
#: gunicorn advises for containers. The gthread worker touches it on every wake-up of its event
#: loop; on a disk-backed temporary folder that write can stall the acknowledgements
HEARTBEAT_DIR = Path("/dev/shm")


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn settings: bind address, ``gthread`` workers, no access log (ours is safer),
    heartbeat files in memory (:data:`HEARTBEAT_DIR`) where the machine has it."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    memory = {"worker_tmp_dir": str(HEARTBEAT_DIR)} if HEARTBEAT_DIR.is_dir() else {}
    return memory | {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "accesslog": None,  # the app logs method, path, status and duration itself
        "errorlog": "-",
        "loglevel": "info",
    }


def build_app() -> Flask:
    """``create_app(Settings.from_env())``; a bad or missing setting exits 2 naming it."""
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    logger.info("serve settings: %s", settings.describe())
    return app


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=DEFAULT_WORKERS,
    show_default="CPUs + 1",
    type=click.IntRange(1),
    help="gunicorn processes. Each serves one request at a time (with --threads 1): a snapshot "
    "download holds one for its duration, so keep more workers than concurrent downloads.",
)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Threads per process. More threads share one interpreter lock: on 2 CPUs, 2 workers x "
    "4 threads answered 268 KB webhooks at 500/s with p99 2.2-24.7 ms in five runs, the "
    "defaults 3.1-8.5 ms in 20 runs of 21 (bench/service_bench.py --only ack).",
)
@click.option(
    "--dev",
    is_flag=True,
    help="Flask's development server (one process, no gunicorn). Authentication still "
    "follows WEBHOOK_TOKEN/API_TOKEN; only LS_PANOPTIC_DEV=1 lets them be unset.",
)
def serve(host: str, port: int, workers: int, threads: int, dev: bool) -> None:
    """Serve POST /webhook (Label Studio events), the ML-backend routes (/health, /setup,
    /predict), the snapshot API (/projects/<id>/...), /metrics and rq-dashboard (/rq).

    \b
    Needs WEBHOOK_TOKEN and API_TOKEN (or LS_PANOPTIC_DEV=1) and REDIS_URL.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = build_app()
    if dev:
        # werkzeug's access log writes whole request lines (query strings included); our own
        # request log (method, path, status, ms) is enough.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app.run(host=host, port=port, debug=False, use_reloader=False, threaded=True)
        return
    GunicornApp(app, gunicorn_options(host, port, workers, threads)).run()

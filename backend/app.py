"""The Flask app factory: ``create_app(settings, redis=None)``; no module-level app.

Routes::

    POST /webhook                          WEBHOOK_TOKEN   Label Studio events -> jobs (webhooks)
    GET  /health                           open            ML-backend health (mlbackend)
    POST /setup, /predict                  WEBHOOK_TOKEN   ML-backend protocol (mlbackend)
    GET  /projects/<id>/snapshot.pkl       API_TOKEN       point-in-time snapshot (api)
    GET  /projects/<id>/snapshot.meta.json API_TOKEN       its sidecar (api)
    GET  /projects/<id>/entries            API_TOKEN       task states (api)
    GET  /projects/<id>/entries/<task>/preview.png  API_TOKEN  one entry drawn (api)
    POST /projects/<id>/resync             API_TOKEN       reconcile with Label Studio (api)
    GET  /projects/<id>/agreement          API_TOKEN       PQ between annotations (agreement)
    GET  /projects/<id>/review[/...]       API_TOKEN       the review page, Basic ok (review)
    GET  /metrics                          open            Prometheus text (metrics)
         /rq/...                           API_TOKEN       rq-dashboard (dashboard)

Logs: one ``request`` line per request (method, path without query, status, milliseconds);
never a body, a header or a token.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request
from redis import Redis

from worker.dispatcher import Dispatcher
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

from . import agreement, api, metrics, mlbackend, review, webhooks
from .auth import TokenGuard
from .dashboard import mount_dashboard
from .errors import register_error_handlers
from .services import EXTENSION, Services

__all__ = ["DEFAULT_MAX_CONTENT_LENGTH", "create_app"]

log = logging.getLogger("ls_panoptic.backend")

#: bytes a request body may hold (413 beyond): a webhook carries one batch of tasks/annotations
DEFAULT_MAX_CONTENT_LENGTH = 8 * 1024 * 1024


def create_app(settings: Settings, redis: Redis | None = None) -> Flask:
    """Build the service's WSGI app.

    Args:
        settings: validated settings (``Settings.from_env()`` in production).
        redis: a client with binary replies (rq and the store need bytes); by default one is
            made from ``settings.redis_url`` (connecting lazily, on first use).

    Raises:
        SettingsError: ``WEBHOOK_TOKEN`` or ``API_TOKEN`` missing outside dev mode.
    """
    settings.require_tokens()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = DEFAULT_MAX_CONTENT_LENGTH
    connection = redis if redis is not None else Redis.from_url(settings.redis_url)
    keys = Keys(settings.key_prefix)
    webhook_token, api_token = settings.webhook_token or None, settings.api_token or None
    app.extensions[EXTENSION] = Services(
        settings=settings,
        redis=connection,
        keys=keys,
        store=Store(connection, keys),
        dispatcher=Dispatcher(connection, settings),
        webhook_guard=TokenGuard("WEBHOOK_TOKEN", webhook_token, allow_basic=True),
        api_guard=TokenGuard("API_TOKEN", api_token),
        dashboard_guard=TokenGuard("API_TOKEN", api_token, allow_basic=True),
    )
    app.before_request(_start_timer)  # first: the other hooks may refuse the request
    app.after_request(_log_request)
    register_error_handlers(app)
    for module in (webhooks, mlbackend, api, agreement, metrics, review):
        app.register_blueprint(module.blueprint)
    mount_dashboard(app, connection, settings.redis_url)
    _warn_if_open(settings)
    return app


def _start_timer() -> None:
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    started = g.get("request_started")
    elapsed = (time.perf_counter() - started) * 1000 if started is not None else -1.0
    log.info(
        "request method=%s path=%s status=%d ms=%.1f",
        request.method,
        request.path,
        response.status_code,
        elapsed,
    )
    return response


def _warn_if_open(settings: Settings) -> None:
    tokens = {"WEBHOOK_TOKEN": settings.webhook_token, "API_TOKEN": settings.api_token}
    unset = [name for name, token in tokens.items() if not token]
    if unset:
        log.warning("dev mode: %s unset, those routes accept anyone", " and ".join(unset))

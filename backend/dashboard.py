"""rq-dashboard mounted under ``/rq``, behind ``API_TOKEN``.

A browser logs in with HTTP Basic (any user name, ``API_TOKEN`` as password); scripts may send
``Authorization: Bearer <API_TOKEN>``. Because a browser replays cached Basic credentials on
cross-site requests, state-changing requests (the dashboard's requeue/delete/empty buttons) must
also come from the dashboard's own origin (``Sec-Fetch-Site`` / ``Origin``), else 403.

rq-dashboard 0.9 keeps its job serializer in a module global (``rq_dashboard.web.config``);
``mount_dashboard`` sets it to RQ's JSON serializer, the one the service's queue uses. That is a
process-wide setting, made when an app is built (never at import).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, Response, request
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq_dashboard.web import config as dashboard_config

from worker.jobqueue import SERIALIZER

from .errors import ApiError, error_response
from .services import services

__all__ = ["DASHBOARD_PREFIX", "mount_dashboard"]

DASHBOARD_PREFIX = "/rq"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PREFIX0 = f"{DASHBOARD_PREFIX}/0/"


def mount_dashboard(app: Flask, redis: Redis, redis_url: str) -> None:
    """Register rq-dashboard's blueprint under ``/rq`` with its token check in front.

    The dashboard reads ``app.redis_conn``; its own hook replaces that, per request, with a
    client of ``RQ_DASHBOARD_REDIS_URL`` (the service's ``REDIS_URL``).
    """
    dashboard_config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = (redis_url,)
    app.redis_conn = redis  # type: ignore[attr-defined]  # rq-dashboard's app attribute
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)
    # Its base template links the favicon through the *app's* ``static`` endpoint.
    app.add_url_rule(
        f"{DASHBOARD_PREFIX}/assets/<path:filename>",
        endpoint="static",
        view_func=rq_dashboard.blueprint.send_static_file,
    )
    app.before_request(_guard)
    app.register_error_handler(NoSuchJobError, _no_such_job)


def _guard() -> None:
    """App-level hook, so it runs before the dashboard's own hooks and views."""
    if request.path != DASHBOARD_PREFIX and not request.path.startswith(DASHBOARD_PREFIX + "/"):
        return
    services().dashboard_guard.check(request.headers.get("Authorization"))
    if request.method not in _SAFE_METHODS and not _same_origin():
        raise ApiError(403, "cross-site request to the dashboard refused")
    # rq-dashboard raises LookupError (a 500) past its list of Redis URLs; ours has one
    instance = (request.view_args or {}).get("instance_number")
    if instance is not None and instance != 0:
        raise ApiError(404, f"no dashboard instance {instance}: the dashboard has one, {_PREFIX0}")


def _no_such_job(exc: NoSuchJobError) -> Response:
    """rq-dashboard's job views raise it for an unknown (or expired) job id."""
    return error_response(404, "no such job (unknown, or its result expired)")


def _same_origin() -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host

"""What the routes share: settings, Redis, store, dispatcher and token guards, one per app.

``create_app`` builds one ``Services`` and keeps it in ``app.extensions``; views reach it through
``services()`` (no module-level state, so several apps can live in one process, as in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import current_app, request
from redis import Redis

from worker.dispatcher import Dispatcher
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

from .auth import TokenGuard

__all__ = ["EXTENSION", "Services", "requires", "services"]

EXTENSION = "ls_panoptic"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Services:
    """One app's collaborators; all are safe to share between gunicorn threads."""

    settings: Settings
    redis: Redis
    keys: Keys
    store: Store
    dispatcher: Dispatcher
    webhook_guard: TokenGuard  # WEBHOOK_TOKEN: Bearer or Basic (Label Studio)
    api_guard: TokenGuard  # API_TOKEN: Bearer (API clients)
    dashboard_guard: TokenGuard  # API_TOKEN: Bearer or Basic (a browser on /rq)


def services() -> Services:
    """The ``Services`` of the app handling the current request."""
    found: Services = current_app.extensions[EXTENSION]
    return found


def requires(guard: Callable[[Services], TokenGuard]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """View decorator: authenticate with ``guard(services())`` before the view runs."""

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            guard(services()).check(request.headers.get("Authorization"))
            return view(*args, **kwargs)

        return guarded

    return decorate

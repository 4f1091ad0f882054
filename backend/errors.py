"""JSON errors for every 4xx/5xx the service answers; never a traceback, never a request body.

Every error body has the same shape::

    {"error": "<code>", "status": <http status>, "message": "<what went wrong and how to fix it>"}

``ApiError`` is the one exception the service's own code raises to refuse a request. HTTP errors
raised by Flask/Werkzeug (404, 405, 413, ...) are rendered the same way; a Redis outage is a 503;
anything unexpected is a 500 whose details go to the server log only (method and path, no body,
no headers).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

__all__ = ["ApiError", "error_response", "register_error_handlers"]

log = logging.getLogger("ls_panoptic.backend")

_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """A refused request: HTTP ``status``, a ``message`` for the client, optional headers."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON body every error shares."""
    code = _CODES.get(status, "error" if status < 500 else "internal_error")
    response = jsonify({"error": code, "status": status, "message": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_error(exc: ApiError) -> Response:
    log.info("refused method=%s path=%s status=%d", request.method, request.path, exc.status)
    return error_response(exc.status, exc.message, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        limit = request.max_content_length
        message = f"request body larger than {limit} bytes" if limit else "request body too large"
    else:
        message = exc.description or exc.name
    # Keep protocol headers such as ``Allow`` (405); the body is ours.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(status, message, headers)


def _redis_error(exc: RedisError) -> Response:
    log.error(
        "redis unavailable method=%s path=%s error=%s",
        request.method,
        request.path,
        type(exc).__name__,
    )
    return error_response(503, "the store (Redis) is unavailable; retry later")


def _unexpected(exc: Exception) -> Response:
    log.error("unhandled error method=%s path=%s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal error; see the server log")


def register_error_handlers(app: Flask) -> None:
    """Route every error through the JSON renderers above (most specific class wins)."""
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(RedisError, _redis_error)
    app.register_error_handler(Exception, _unexpected)

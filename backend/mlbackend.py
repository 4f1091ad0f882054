"""The ML-backend protocol, so the service can be connected under a project's Model settings.

Label Studio calls ``/health`` and ``/setup`` when the model is connected and before every
prediction request, and ``/predict`` inline on every task it hands out (our worker's own SDK
fetches included), so all three answer at once without calling anyone. ``/setup`` receives the
project's label config and, in ``access_token``, a Label Studio token: neither is stored or
logged; the worker uses its own configured ``LABEL_STUDIO_API_KEY``.

``/setup`` and ``/predict`` require ``WEBHOOK_TOKEN`` (Basic with the token as password is what
the Model settings send), so a wrong password fails the connection check visibly instead of
silently refusing the webhooks later. ``/health`` is open: it reveals nothing and also serves
load balancers and container health checks.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, Response, jsonify, request

from .errors import ApiError
from .services import requires, services

__all__ = ["MODEL_CLASS", "MODEL_VERSION", "blueprint"]

log = logging.getLogger("ls_panoptic.backend")

MODEL_CLASS = "LsPanopticSync"
MODEL_VERSION = "ls-panoptic-sync"  # never produces predictions; names the connection in LS

blueprint = Blueprint("mlbackend", __name__)


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """``{"status": "UP"}`` while Redis answers (else 503 ``DOWN``): the queue needs it."""
    body = {"status": "UP", "model_class": MODEL_CLASS, "model_version": MODEL_VERSION}
    try:
        services().redis.ping()
    except Exception as exc:  # any failure to reach Redis means "not serving"
        log.warning("health redis=unreachable error=%s", type(exc).__name__)
        return jsonify(body | {"status": "DOWN", "reason": "Redis unreachable"}), 503
    return jsonify(body), 200


@blueprint.post("/setup")
@requires(lambda s: s.webhook_guard)
def setup() -> Response:
    """Accept Label Studio's setup payload; answer with our (constant) model version."""
    payload = _json_object()
    project = payload.get("project")
    # ``project`` is "<id>.<created timestamp>"; log that and which fields came, never values.
    log.info(
        "ml-setup project=%s schema=%s hostname=%s access_token=%s",
        project if re.fullmatch(r"\d+(\.\d+)?", str(project)) else "-",
        "schema" in payload,
        "hostname" in payload,
        "present" if payload.get("access_token") else "absent",
    )
    return jsonify({"model_version": MODEL_VERSION})


@blueprint.post("/predict")
@requires(lambda s: s.webhook_guard)
def predict() -> Response:
    """No predictions, at once: this service only listens."""
    return jsonify({"results": [], "model_version": MODEL_VERSION})


def _json_object() -> dict[str, object]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # syntax, encoding, too long a number, too deep
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f"body must be a JSON object, got {type(payload).__name__}")
    return payload

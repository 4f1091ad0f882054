"""``GET /projects/<id>/agreement``, behind ``API_TOKEN`` like the rest of the project API.

How far the annotations of each task agree, as the worker recorded it when it last synced the
task (:mod:`worker._store_agreement`): the same document as ``ls-panoptic agreement --json``
(:mod:`ls_panoptic.agreement_summary`) without its ``failures`` and ``skipped`` (the worker
logs those): ``pairs`` worst first, ``summary`` (per task worst first, per annotator pair, per
annotator, per class, overall), ``classes``, ``stuff`` and ``review``: with ``?min_pq=PQ``
(0 to 1) the tasks whose mean PQ is below it, worst first, else ``null``.
"""

from __future__ import annotations

import math

from flask import Blueprint, Response, jsonify, request

from ls_panoptic.agreement_summary import (
    pair_record,
    review_record,
    summarise,
    summary_record,
    worst_first,
)
from ls_panoptic.labels import labelset_from_config
from worker.store import StoreError

from .api import require_known
from .errors import ApiError
from .services import services

__all__ = ["blueprint"]

blueprint = Blueprint("agreement", __name__, url_prefix="/projects")


@blueprint.before_request
def _authenticate() -> None:
    services().api_guard.check(request.headers.get("Authorization"))


@blueprint.get("/<int(min=1, max=9223372036854775807):project>/agreement")
def agreement(project: int) -> Response:
    svc = services()
    record = require_known(svc, project)
    min_pq = _min_pq()
    try:
        comparisons, stuff = svc.store.agreement(project)
    except StoreError as exc:
        raise ApiError(503, f"agreement unreadable: {exc}") from None
    labels = labelset_from_config(record.label_config)
    summary = summarise(comparisons)
    return jsonify(
        {
            "classes": {str(k): v for k, v in sorted(record.id2label.items())},
            "stuff": sorted(stuff),
            "pairs": [pair_record(c, labels, stuff) for c in worst_first(comparisons)],
            "summary": summary_record(summary, labels, stuff),
            "review": review_record(summary, min_pq),
        }
    )


def _min_pq() -> float | None:
    """``?min_pq=``: a number from 0 to 1, or absent; 400 naming it otherwise."""
    raw = request.args.get("min_pq")
    if raw is None:
        return None
    try:
        value = float(raw.strip()[:40])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise ApiError(400, "query parameter 'min_pq' must be a number from 0 to 1")
    return value

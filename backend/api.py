"""The project API, behind ``API_TOKEN`` (``Authorization: Bearer <API_TOKEN>``).

- ``GET /projects/<id>/snapshot.pkl``: the point-in-time snapshot, a pickle of
  ``{image key: {"panoptic_mask", "inst2class"}}`` that loads with plain ``pickle.load``.
  Pinned when the request arrives, then streamed from the store to the client entry by entry
  (no temporary file): memory stays near one entry whatever the project's size. Its exact
  ``Content-Length`` is known beforehand from the entries' shapes; should a pinned entry
  vanish mid-way (the snapshot outlived the store's grace period), the connection closes short
  of that length, so a client never takes a truncated snapshot for a whole one.
- ``GET /projects/<id>/snapshot.meta.json``: the sidecar (id2label, provenance, failures), as
  ``convert`` writes it (:mod:`ls_panoptic.sidecar`).
- ``GET /projects/<id>/entries``: the state of every task the store tracks, by task id, one
  object of the fields of ``worker.store.EntryState`` each. Paged with ``?limit=N`` (1 to
  :data:`PAGE_LIMIT`) and ``&after=<task id>`` (the tasks above it): the body stays a JSON list,
  ``X-Total-Count`` tells how many states the project has, and while more follow, ``X-Next-After``
  holds the next page's ``after`` and ``Link`` (``rel="next"``) its URL. Without ``limit`` the
  list is whole (as before paging existed). Each state: a failed task (``status`` ``error``) has its
  ``error``, and an ``error_fingerprint`` when resyncs leave it alone until what it failed on
  changes (``null`` otherwise). It has no entry in snapshots (their sidecar lists it under
  ``failures``); ``stale_version`` is set when its last good entry is kept for review, and
  ``hint`` says what an operator can change (the ``LS_PANOPTIC_*`` setting), ``null`` when only
  the task itself can mend it.
- ``GET /projects/<id>/entries/<task>/preview.png``: the task's entry drawn, to look at rather
  than read: each segment in its class's hue, outlined, a legend of the classes under it; on
  grey, not the photo (the backend never fetches images). ``?size=N``: longest side in pixels
  (default :data:`PREVIEW_SIDE`; the mask is sampled down, never up). A failed task's last good
  entry is drawn with the header ``X-Entry-Stale: true`` (``false`` for a current entry).
- ``POST /projects/<id>/resync``: enqueue a reconciliation with Label Studio -> 202 ``{job_id}``;
  ``?rebuild=true`` re-converts every task, failed ones included.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from flask import Blueprint, Response, jsonify, request

from ls_panoptic.labels import labelset_from_config
from ls_panoptic.preview import render_preview
from worker.remedies import stored_remedy
from worker.store import EntryState, ProjectRecord, StoreError

from .errors import ApiError
from .services import Services, services

__all__ = ["blueprint", "require_known"]

log = logging.getLogger("ls_panoptic.backend")

blueprint = Blueprint("api", __name__, url_prefix="/projects")
#: a project id Label Studio can have (a database integer); any other path is 404
_PROJECT = "/<int(min=1, max=9223372036854775807):project>"
_TASK = "/<int(min=0, max=9223372036854775807):task>"
#: longest side of a preview in pixels unless ``?size=`` says otherwise, and the bounds of it
PREVIEW_SIDE, PREVIEW_SIDE_RANGE = 1024, (16, 16384)
#: most states one page of ``/entries`` holds (``?limit=``)
PAGE_LIMIT = 1000


@blueprint.before_request
def _authenticate() -> None:
    services().api_guard.check(request.headers.get("Authorization"))


def require_known(svc: Services, project: int) -> ProjectRecord:
    """The project's record; 404 saying how to import it when the store has none."""
    record = svc.store.get_project(project)
    if record is None:
        raise ApiError(
            404,
            f"project {project} is not in the store; "
            f"POST /projects/{project}/resync to import it from Label Studio",
        )
    return record


@blueprint.get(_PROJECT + "/snapshot.pkl")
def snapshot(project: int) -> Response:
    svc = services()
    require_known(svc, project)
    try:
        info = svc.store.pin_snapshot(project)
        size, chunks = svc.store.stream_snapshot(info)
    except StoreError as exc:  # e.g. an entry is unreadable
        raise ApiError(503, f"snapshot failed, retry: {exc}") from None
    log.info(
        "snapshot project=%d bytes=%d entries=%d failures=%d",
        project,
        size,
        info.count,
        len(info.failures),
    )
    headers = {
        "Content-Disposition": f'attachment; filename="project-{project}.pkl"',
        "Cache-Control": "no-store",
        "X-Snapshot-Entries": str(info.count),
        "X-Snapshot-Failures": str(len(info.failures)),
        "X-Snapshot-Created-At": info.created_at,
    }
    response = Response(
        _logged(project, chunks), mimetype="application/octet-stream", headers=headers
    )
    response.content_length = size
    return response


def _logged(project: int, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, logging a failure mid-stream (the status is sent by then: the client sees
    the connection close short of ``Content-Length``)."""
    try:
        yield from chunks
    except StoreError as exc:
        log.error("snapshot project=%d failed mid-stream: %s", project, exc)
        raise


@blueprint.get(_PROJECT + "/snapshot.meta.json")
def snapshot_meta(project: int) -> Response:
    svc = services()
    require_known(svc, project)
    return jsonify(svc.store.snapshot_meta(project))


@blueprint.get(_PROJECT + "/entries")
def entries(project: int) -> Response:
    svc = services()
    require_known(svc, project)
    if request.args.get("limit") is None:
        if request.args.get("after") is not None:
            raise ApiError(400, "query parameter 'after' needs 'limit' (a page size)")
        return jsonify([_listed(state) for state in svc.store.states(project)])
    limit = _int_arg("limit", PAGE_LIMIT, 1, PAGE_LIMIT)
    after = _int_arg("after", 0, 0, 9223372036854775807)
    page, following, total = svc.store.state_page(project, after, limit)
    response = jsonify([_listed(state) for state in page])
    response.headers["X-Total-Count"] = str(total)
    if following is not None:
        response.headers["X-Next-After"] = str(following)
        url = f"{request.path}?limit={limit}&after={following}"
        response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def _listed(state: EntryState) -> dict[str, Any]:
    """A task's state as ``/entries`` lists it: its fields, and for a failure the ``hint`` of
    what an operator can change (``None`` when only the task itself can mend it)."""
    listed = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
    if state.status == "error":
        listed["hint"] = stored_remedy(state.remedy)
    return listed


@blueprint.get(_PROJECT + "/entries" + _TASK + "/preview.png")
def preview(project: int, task: int) -> Response:
    svc = services()
    record = require_known(svc, project)
    stored = svc.store.get_entry(project, task)
    if stored is None:
        raise ApiError(
            404,
            f"task {task} of project {project} has no entry; "
            f"GET /projects/{project}/entries gives each task's status and error",
        )
    side = _int_arg("size", PREVIEW_SIDE, *PREVIEW_SIDE_RANGE)
    labels = labelset_from_config(record.label_config)
    mask = _sample_down(stored.panoptic_mask, side)
    picture = render_preview(mask, stored.inst2class, labels.background_id, None, record.id2label)
    png = io.BytesIO()
    picture.save(png, format="PNG", compress_level=1)  # fast: a preview is looked at, not kept
    headers = {"Cache-Control": "no-store", "X-Entry-Stale": str(stored.stale).lower()}
    return Response(png.getvalue(), mimetype="image/png", headers=headers)


def _sample_down(mask: npt.NDArray[np.uint32], side: int) -> npt.NDArray[np.uint32]:
    """Every n-th row and column, so the longest side is at most ``side`` (a view)."""
    step = -(-max(mask.shape) // side)  # ceiling division
    return mask[::step, ::step] if step > 1 else mask


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]``; 400 naming it otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= len(str(high))):
        digits = ""  # not a plain decimal number of at most high's digits
    if not digits or not low <= int(digits) <= high:
        raise ApiError(400, f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(digits)


@blueprint.post(_PROJECT + "/resync")
def resync(project: int) -> tuple[Response, int]:
    """Allowed for unknown projects too: a resync is how a project first enters the store.
    ``?rebuild=true`` re-converts every task (``ls-panoptic resync --rebuild``)."""
    rebuild = _flag("rebuild")
    dispatcher = services().dispatcher
    job_id = (dispatcher.rebuild_project if rebuild else dispatcher.resync_project)(project)
    log.info("resync project=%d rebuild=%s job=%s", project, rebuild, job_id)
    body = {"status": "accepted", "project": project, "rebuild": rebuild, "job_id": job_id}
    return jsonify(body), 202


_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no", ""})


def _flag(name: str) -> bool:
    """A boolean query parameter (absent: false); 400 naming it for any other value."""
    raw = request.args.get(name, "").strip().lower()
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ApiError(400, f"query parameter {name!r} must be true or false, not {raw[:40]!r}")

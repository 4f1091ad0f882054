"""The project API, behind ``API_TOKEN`` (``Authorization: Bearer <API_TOKEN>``).

- ``GET /projects/<id>/snapshot.pkl``: the point-in-time snapshot, a pickle of
  ``{image key: {"panoptic_mask", "inst2class"}}`` that loads with plain ``pickle.load``.
  The store streams it entry by entry into an anonymous temporary file under
  ``settings.snapshot_dir`` (no name, so it is gone once closed, even after a crash), which is
  then sent back in pieces: memory stays near one entry whatever the project's size.
- ``GET /projects/<id>/snapshot.meta.json``: the sidecar (id2label, provenance, failures), as
  ``convert`` writes it (:mod:`ls_panoptic.sidecar`).
- ``GET /projects/<id>/entries``: the state of every task the store tracks, one object of the
  fields of ``worker.store.EntryState`` each: a failed task (``status`` ``error``) has its
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

import contextlib
import dataclasses
import io
import logging
import os
import tempfile
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from flask import Blueprint, Response, jsonify, request, send_file

from ls_panoptic.labels import labelset_from_config
from ls_panoptic.preview import render_preview
from worker.remedies import stored_remedy
from worker.store import EntryState, ProjectRecord, SnapshotInfo, StoreError

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
    file, size, info = _write_snapshot(svc, project)
    log.info(
        "snapshot project=%d bytes=%d entries=%d failures=%d",
        project,
        size,
        info.count,
        len(info.failures),
    )
    response = send_file(
        file,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name=f"project-{project}.pkl",
        conditional=False,
        etag=False,
        max_age=None,
    )
    response.content_length = size
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Snapshot-Entries"] = str(info.count)
    response.headers["X-Snapshot-Failures"] = str(len(info.failures))
    response.headers["X-Snapshot-Created-At"] = info.created_at
    return response


def _write_snapshot(svc: Services, project: int) -> tuple[BinaryIO, int, SnapshotInfo]:
    """The snapshot in an anonymous temporary file, rewound; its size; what it holds."""
    directory = svc.settings.snapshot_dir
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as on_failure:
        file = on_failure.enter_context(
            tempfile.TemporaryFile(dir=directory, prefix=f"snapshot-{project}-", suffix=".pkl")
        )
        try:
            info = svc.store.write_snapshot(project, file)
        except StoreError as exc:  # e.g. a pinned entry expired under a very long snapshot
            raise ApiError(503, f"snapshot failed, retry: {exc}") from None
        file.flush()
        size = os.fstat(file.fileno()).st_size
        file.seek(0)
        on_failure.pop_all()  # success: the response owns the file and closes it once sent
    return file, size, info


@blueprint.get(_PROJECT + "/snapshot.meta.json")
def snapshot_meta(project: int) -> Response:
    svc = services()
    require_known(svc, project)
    return jsonify(svc.store.snapshot_meta(project))


@blueprint.get(_PROJECT + "/entries")
def entries(project: int) -> Response:
    svc = services()
    require_known(svc, project)
    return jsonify([_listed(state) for state in svc.store.states(project)])


def _listed(state: EntryState) -> dict[str, Any]:
    """A task's state as ``/entries`` lists it: its fields, and for a failure the ``hint`` of
    what an operator can change (``None`` when only the task itself can mend it)."""
    listed = dataclasses.asdict(state)
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

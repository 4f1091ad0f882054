"""The review page: every task of a project in the browser, what is wrong, and a link to fix it.

Behind ``API_TOKEN`` as the dashboard is: HTTP Basic (any user name, the token as password, so
a browser asks once and keeps it) or ``Authorization: Bearer``; never the token in a URL.
Server-rendered HTML (``backend/templates``), a little JavaScript and CSS (``backend/static``),
nothing from the internet. Reads the review index (:mod:`worker.review_index`) and draws with
:mod:`worker.thumbnails`::

    GET /projects/<id>/review                     the grid: filters, sort, paging, counts
    GET /projects/<id>/review/changes?since=<n>[&list=<grid query>]   cards changed after
                                                  change number n (live)
    GET /projects/<id>/review/<task>              the detail view of one task
    GET /projects/<id>/review/<task>/thumb.jpg?v=<version>   the entry over its photo, small
    GET /projects/<id>/review/<task>/photo.jpg?v=<version>   the photo, the detail view's size
    GET /projects/<id>/review/<task>/ids.png?v=<version>     instance ids in RGB, same size

Grid query parameters: ``status`` (ok, empty, error, stale, unreadable), ``class`` (class id),
``annotator`` (Label Studio user id, ``-`` for unknown), ``since`` (ISO 8601 time; no zone:
UTC), ``sort`` (``task`` or ``changed``), ``desc`` (``1``), ``page`` (from 1), ``per_page``.
The grid hands them (but ``page``) on to the detail view, whose next and previous tasks are
those of the same filtered, sorted list, and whose way back leads to the page holding its task.
While another process builds the index (:class:`worker.review_index.IndexBuilding`), the pages
say "indexing N of M" (503, ``Retry-After``) instead of showing a partly built index.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for

from ls_panoptic.errors import PanopticError
from ls_panoptic.labels import labelset_from_config
from worker.review_index import SORTS, IndexBuilding, ReviewIndex, Row
from worker.store import ProjectRecord
from worker.thumbnails import PALETTE, Pictures, class_colour, id_png, read_facts, read_mask

from .api import require_known
from .errors import ApiError
from .services import services

__all__ = ["blueprint"]

blueprint = Blueprint(
    "review",
    __name__,
    url_prefix="/projects",
    template_folder="templates",
    static_folder="static",
    static_url_path="/review-static",
)
_PROJECT = "/<int(min=1, max=9223372036854775807):project>"
_TASK = "/<int(min=0, max=9223372036854775807):task>"
STATUSES = ("ok", "empty", "error", "stale", "unreadable")
THUMB_SIDE, DETAIL_SIDE = 320, 1600
PER_PAGE, PER_PAGE_RANGE = 60, (1, 500)
#: changed cards one poll renders at most; beyond (a resync), the page offers a reload
LIVE_CARDS = 300
_WORD = re.compile(r"[A-Za-z0-9_-]{1,64}")
_EXTENSION = "ls_panoptic.review"
#: the grid's query parameters the detail view carries along (its list), ``page`` aside
LIST_ARGS = ("status", "class", "annotator", "since", "sort", "desc", "per_page")


@blueprint.before_request
def _authenticate() -> None:
    services().dashboard_guard.check(request.headers.get("Authorization"))


@blueprint.errorhandler(IndexBuilding)
def _building(exc: IndexBuilding) -> Response:
    """The index is being built by another process: its progress, never its partial rows."""
    headers = {"Retry-After": "1", "Cache-Control": "no-store"}
    if request.path.endswith("/review/changes"):
        answer = jsonify(indexing={"done": exc.done, "total": exc.total})
    else:
        html = render_template("review/indexing.html", project=exc.project, done=exc.done,
                               total=exc.total)  # fmt: skip
        answer = Response(html, mimetype="text/html")
    answer.status_code = 503
    answer.headers.update(headers)
    return answer


def _index() -> ReviewIndex:
    svc = services()
    return ReviewIndex(svc.redis, svc.keys)


def _pictures() -> Pictures:
    """One per app: it holds the Label Studio client photos are downloaded with."""
    found = current_app.extensions.get(_EXTENSION)
    if found is None:
        svc = services()
        found = current_app.extensions.setdefault(
            _EXTENSION, Pictures(svc.redis, svc.keys, svc.settings)
        )
    pictures: Pictures = found
    return pictures


def _background(record: ProjectRecord) -> int | None:
    try:
        return labelset_from_config(record.label_config).background_id
    except (PanopticError, ValueError):  # an unusable config: nothing is background
        return None


def _ls_link(project: int, task: int) -> str | None:
    base = services().settings.label_studio_url
    return f"{base.rstrip('/')}/projects/{project}/data?task={task}" if base else None


def _classes(record: ProjectRecord) -> list[dict[str, Any]]:
    return [
        {"id": k, "label": v, "colour": class_colour(k)} for k, v in sorted(record.id2label.items())
    ]


@blueprint.get(_PROJECT + "/review")
def grid(project: int) -> str:
    record = require_known(services(), project)
    filters = _filters()
    per_page = _int_arg("per_page", PER_PAGE, *PER_PAGE_RANGE)
    page_no = _int_arg("page", 1, 1, 10**9)
    page = _index().query(project, **filters, offset=(page_no - 1) * per_page, limit=per_page)
    pages = max(1, -(-page.total // per_page))
    context = _context(project, record)
    query = _list_query()
    return render_template(
        "review/grid.html",
        **context,
        page=page,
        cards=[_card(project, row, query) for row in page.rows],
        list_query=urlencode(query),
        filters=filters,
        args=request.args,
        page_no=page_no,
        pages=pages,
        per_page=per_page,
        statuses=STATUSES,
        sorts=SORTS,
        since_text=request.args.get("since", ""),
        link=lambda **changes: _link(project, changes),
    )


@blueprint.get(_PROJECT + "/review/changes")
def changes(project: int) -> Response:
    """The cards changed after ``since``, rendered (the page replaces them in place), the
    header's counts, and ``listed``: how many tasks pass the grid's filters (``list``);
    ``reload`` when the change log no longer reaches back that far; ``many`` (their number,
    no cards) when more than :data:`LIVE_CARDS` changed."""
    record = require_known(services(), project)
    since = _int_arg("since", 0, 0, 2**62)
    index = _index()
    found = index.changes(project, since, limit=LIVE_CARDS)
    # the grid's list (``list``: its query string): the cards' links lead into it, and the
    # number of tasks passing its filters comes with the project's counts
    listed = dict(parse_qsl(request.args.get("list", "")[:2000]))
    query = _list_query(listed)
    counts = index.query(project, **_filters(listed), limit=1)
    context = _context(project, record)
    cards = [
        {
            "task_id": row.task_id,
            "row": row.as_json(),
            "html": render_template(
                "review/_card.html", card=_card(project, row, query), **context
            ),
        }
        for row in found.rows
    ]
    return jsonify(
        seq=found.seq,
        reload=found.reload,
        many=found.many,
        cards=cards,
        gone=found.gone,
        status_counts=counts.status_counts,
        class_counts={str(k): v for k, v in counts.class_counts.items()},
        total=sum(counts.status_counts.values()) - counts.status_counts.get("stale", 0),
        listed=counts.total,
    )


@blueprint.get(_PROJECT + "/review" + _TASK)
def detail(project: int, task: int) -> str:
    """One task; ``j``/``k`` move through the grid's list (its query: filters and sort), and
    the way back leads to the grid's page holding the task, its card focused."""
    record = require_known(services(), project)
    index = _index()
    row = index.row(project, task)
    if row is None:
        raise ApiError(404, f"task {task} of project {project} is not in the store")
    filters = _filters()
    per_page = _int_arg("per_page", PER_PAGE, *PER_PAGE_RANGE)
    query = _list_query()
    place = index.position(project, task, **filters)
    page_no = place.rank // per_page + 1 if place is not None else 1
    entry: dict[str, Any] = {}
    if row.version:
        svc = services()
        facts = read_facts(svc.redis, svc.keys, project, task, row.version)
        areas = _pictures().areas(project, task, row.version) if facts is not None else None
        if facts is not None and areas is not None:
            entry = {
                "segments": [
                    {"id": i, "class": c, "area": areas.get(i, 0)}
                    for i, c in sorted(facts.inst2class.items())
                ],
                "meta": facts.meta,
                "size": [facts.width, facts.height],
            }

    def neighbour(other: int | None) -> str | None:
        return None if other is None else url_for(".detail", project=project, task=other, **query)

    back_args: dict[str, Any] = {**query, **({"page": page_no} if page_no > 1 else {})}
    back = url_for(".grid", project=project, **back_args)
    return render_template(
        "review/detail.html",
        **_context(project, record),
        card=_card(project, row, query),
        row=row,
        entry=entry,
        place=place,
        before=place.before if place else None,
        after=place.after if place else None,
        before_link=neighbour(place.before if place else None),
        after_link=neighbour(place.after if place else None),
        back=f"{back}#task-{task}",
        filtered=any(name in query for name in ("status", "class", "annotator", "since")),
        seq=index.query(project, limit=1).seq,
        detail_side=DETAIL_SIDE,
    )


@blueprint.get(_PROJECT + "/review" + _TASK + "/thumb.jpg")
def thumbnail(project: int, task: int) -> Response:
    record = require_known(services(), project)
    version = _version(project, task)
    picture = _pictures().thumbnail(project, task, version, THUMB_SIDE, _background(record))
    return _image(picture, "image/jpeg", project, task)


@blueprint.get(_PROJECT + "/review" + _TASK + "/photo.jpg")
def photo(project: int, task: int) -> Response:
    require_known(services(), project)
    picture = _pictures().photo(project, task, _version(project, task), DETAIL_SIDE)
    return _image(picture, "image/jpeg", project, task)


@blueprint.get(_PROJECT + "/review" + _TASK + "/ids.png")
def ids(project: int, task: int) -> Response:
    require_known(services(), project)
    svc = services()
    stored = read_mask(svc.redis, svc.keys, project, task, _version(project, task), DETAIL_SIDE)
    return _image(id_png(stored.mask) if stored else None, "image/png", project, task)


def _version(project: int, task: int) -> str:
    """``?v=``: the entry version the page shows (immutable, so cacheable); else the one the
    task shows now."""
    version = request.args.get("v") or _pictures().version_of(project, task)
    if not version or not re.fullmatch(r"[0-9a-f]{1,64}", version):
        raise ApiError(404, f"task {task} of project {project} has no entry to draw")
    return version


def _image(data: bytes | None, mimetype: str, project: int, task: int) -> Response:
    if data is None:
        raise ApiError(404, f"the entry of task {task} of project {project} is gone; reload")
    cache = "private, max-age=86400, immutable" if request.args.get("v") else "no-store"
    return Response(data, mimetype=mimetype, headers={"Cache-Control": cache})


def _context(project: int, record: ProjectRecord) -> dict[str, Any]:
    classes = _classes(record)
    return {
        "project": project,
        "classes": classes,
        "labels": {c["id"]: c["label"] for c in classes},
        "background_id": _background(record),
        "palette": PALETTE,
        "ls_url": services().settings.label_studio_url,
    }


def _card(project: int, row: Row, query: Mapping[str, Any]) -> dict[str, Any]:
    shown = "stale" if row.stale else row.status
    return {
        "row": row,
        "shown": shown,
        "ls_link": _ls_link(project, row.task_id),
        "thumb": url_for(".thumbnail", project=project, task=row.task_id, v=row.version)
        if row.version
        else None,
        "detail": url_for(".detail", project=project, task=row.task_id, **query),
    }


def _list_query(args: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The grid's list as query parameters (filters, sort, page size; not the page), from
    ``args`` (default: the request's)."""
    given = request.args if args is None else args
    return {name: value for name in LIST_ARGS if (value := given.get(name, ""))}


def _filters(given: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The grid's filters and sort from ``given`` (default: the request's query), checked."""
    args = request.args if given is None else given
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(STATUSES)}, not {status[:40]!r}")
    annotator = args.get("annotator") or None
    if annotator is not None and not _WORD.fullmatch(annotator):
        raise ApiError(400, "annotator must be a Label Studio user id (or '-')")
    sort = args.get("sort") or "task"
    if sort not in SORTS:
        raise ApiError(400, f"sort must be one of {', '.join(SORTS)}, not {sort[:40]!r}")
    raw_class = args.get("class") or None
    class_id = _int_arg("class", 0, 0, 2**31, args) if raw_class is not None else None
    return {
        "status": status,
        "class_id": class_id,
        "annotator": annotator,
        "changed_since": _since(args.get("since") or None),
        "sort": sort,
        "descending": args.get("desc") == "1",
    }


def _since(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "since must be an ISO 8601 time, e.g. 2024-05-01T10:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.timestamp()


def _link(project: int, changes: Mapping[str, Any]) -> str:
    """The grid's URL with these query parameters changed (``None``: removed); a change of
    anything but the page goes back to page 1."""
    args: dict[str, Any] = {k: v for k, v in request.args.items() if v != ""}
    if "page" not in changes:
        args.pop("page", None)
    for name, value in changes.items():
        if value is None:
            args.pop(name, None)
        else:
            args[name] = str(value)
    return url_for(".grid", project=project, **args)


def _int_arg(
    name: str, default: int, low: int, high: int, given: Mapping[str, str] | None = None
) -> int:
    raw = (request.args if given is None else given).get(name)
    if raw is None or raw == "":
        return default
    digits = raw.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20) or not (
        low <= int(digits) <= high
    ):
        raise ApiError(400, f"query parameter {name!r} must be an integer from {low} to {high}")
    return int(digits)

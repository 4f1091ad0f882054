"""The one boundary to Label Studio: SDK calls, image downloads, and the errors of both.

Every SDK, HTTP and Label Studio failure leaves this module as one of::

    LabelStudioError            Label Studio answered something unusable (the message says what)
    ├── LabelStudioUnavailable  network error, timeout, 408/429/5xx: retry later, with backoff
    ├── LabelStudioAuthError    401/403, or a key the SDK rejects: fix LABEL_STUDIO_API_KEY
    ├── LabelStudioNotFound     404 on a project or task: it was deleted (or the id is wrong)
    └── ImageNotAllowed         an image this service will not fetch (see worker.image_source)

Messages name Label Studio's URL and what failed, never the API key. Authentication is the SDK's:
a legacy token is sent as ``Authorization: Token <key>``; a personal access token (a JWT refresh
token) is exchanged at ``/api/token/refresh/`` for access tokens sent as ``Bearer``. Downloads
reuse the SDK's header, so both kinds work there too.

Tasks are read with ``resolve_uri=false``: ``data`` keeps the URLs as stored, as in an export, so
image keys match a batch conversion. :meth:`LabelStudio.list_tasks` pages by task id (``id >
last``, ordered by id): tasks created or deleted meanwhile never shift a page. A listed task whose
data this client cannot use is yielded as an :class:`UnusableTask` (its id and what is wrong),
one the listing gives incomplete as a :class:`PartialTask`, instead of raising, so one
malformed task never hides the others; a failure of the listing itself (network, HTTP status,
an answer that is not Label Studio's) raises as any call does.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from label_studio_sdk import LabelStudio as _SDK
from label_studio_sdk.core.api_error import ApiError

from ls_panoptic.images import ImageInfo, read_image_info
from ls_panoptic.model import Task
from ls_panoptic.tasks import task_from_dict
from worker import image_source
from worker.image_source import ImageRefused, TooLarge, shown

__all__ = [
    "DEFAULT_TIMEOUT",
    "WEBHOOK_ACTIONS",
    "ImageNotAllowed",
    "LabelStudio",
    "LabelStudioAuthError",
    "LabelStudioError",
    "LabelStudioNotFound",
    "LabelStudioUnavailable",
    "PartialTask",
    "ProjectInfo",
    "TaskStamp",
    "UnusableTask",
]

#: seconds for each HTTP request (connect, each read, write)
DEFAULT_TIMEOUT = 10.0
#: tasks per page of ``list_tasks``; a page carries full annotation results
DEFAULT_PAGE_SIZE = 100
#: tasks per page of ``task_stamps`` (a few fields each)
STAMP_PAGE_SIZE = 1000
#: largest image download in bytes; more is refused rather than filling the disk
DEFAULT_MAX_IMAGE_BYTES = 256 * 2**20
#: the Label Studio events the service acts on (DESIGN 4)
WEBHOOK_ACTIONS = (
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
    "TASKS_CREATED", "TASKS_DELETED", "PROJECT_UPDATED",
)  # fmt: skip
#: header marking a webhook as ours, so a new backend URL updates it instead of adding one
WEBHOOK_MARKER = "X-LS-Panoptic"
_RETRYABLE = frozenset({408, 429})
_RAW_URIS: Any = {"additional_query_parameters": {"resolve_uri": False}}


class LabelStudioError(Exception):
    """Label Studio failed or answered something unusable; the message says what to fix."""


class LabelStudioUnavailable(LabelStudioError):
    """Unreachable, timed out, or a 408/429/5xx answer: retry later with backoff."""


class LabelStudioAuthError(LabelStudioError):
    """The API key was refused (401/403) or is unusable: fix LABEL_STUDIO_API_KEY."""


class LabelStudioNotFound(LabelStudioError):
    """404 on a project or task: it was deleted."""


class ImageNotAllowed(LabelStudioError):
    """An image URL off Label Studio's origin and not in images_dir, or escaping images_dir."""


@dataclass(frozen=True)
class ProjectInfo:
    """What the service needs of a project: its id, label config XML and title."""

    id: int
    label_config: str
    title: str


@dataclass(frozen=True)
class UnusableTask:
    """A listed task whose data this client cannot use.

    ``error`` is the message :meth:`LabelStudio.get_task` raises (as a :class:`LabelStudioError`)
    for the same data: it names the task and what is wrong with it.
    """

    id: int
    error: str


@dataclass(frozen=True)
class TaskStamp:
    """A listed task's id, its ``updated_at`` (Label Studio moves it whenever the task, one of
    its annotations or predictions is created, edited or deleted), and how many annotations
    (not skipped) and predictions it has."""

    id: int
    updated_at: str | None
    annotations: int
    predictions: int


@dataclass(frozen=True)
class PartialTask(UnusableTask):
    """A listed task whose listing disagrees with its own counts (``annotations_ids``,
    ``total_predictions``): the listing may have left annotations or predictions out, so only
    a pull (``get_task``) gives it whole. ``error`` says what disagreed."""


class LabelStudio:
    """Projects, tasks, images and webhooks of one Label Studio (``url``, ``api_key``).

    ``timeout`` is per HTTP request; ``images_dir`` an optional local image folder. The SDK does
    not retry (``max_retries=0``): retrying is the job queue's business, with backoff.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = DEFAULT_TIMEOUT,
        images_dir: Path | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LabelStudioError(
                f"LABEL_STUDIO_URL {url!r} is not an http(s) URL; set it to Label Studio's "
                "address, e.g. http://localhost:8080"
            )
        if not api_key.strip():
            raise LabelStudioAuthError("LABEL_STUDIO_API_KEY is empty; set it to an access token")
        self.url = url.strip().rstrip("/")
        self._timeout = timeout
        self._images_dir = images_dir
        self._page_size = page_size
        self._max_image_bytes = max_image_bytes
        # one connection pool for the SDK and the downloads; image_source follows redirects
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        try:
            # the trailing slash keeps a path prefix in the SDK's token refresh URL (urljoin)
            self._sdk = _SDK(  # type: ignore[no-untyped-call]
                base_url=self.url + "/", api_key=api_key.strip(), timeout=timeout,
                max_retries=0, httpx_client=self._http,
            )  # fmt: skip
        except ApiError as exc:  # the SDK itself rejects an expired personal access token
            self._http.close()
            raise LabelStudioAuthError(
                f"LABEL_STUDIO_API_KEY is unusable{_detail(exc.body)}; create a new personal "
                "access token in Label Studio (Account & Settings)"
            ) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get_project(self, project_id: int) -> ProjectInfo:
        with self._calling(f"reading project {project_id}"):
            project = self._sdk.projects.get(id=project_id)
        title = project.title or ""
        return ProjectInfo(int(project.id or project_id), project.label_config or "", title)

    def get_task(self, task_id: int) -> tuple[int, Task]:
        """``(project id, task)`` with annotations and predictions (drafts are never read)."""
        with self._calling(f"reading task {task_id}"):
            data = _dumped(self._sdk.tasks.get(id=str(task_id), request_options=_RAW_URIS))
        if not isinstance(data.get("project"), int):
            raise LabelStudioError(f"task {task_id}: Label Studio's answer names no project")
        return data["project"], _task(data)

    def list_tasks(
        self, project_id: int, ids: Collection[int] | None = None
    ) -> Iterator[Task | UnusableTask]:
        """Every task of the project with annotations and predictions, by ascending id; only
        those of ``ids`` when given (listed by runs of nearby ids, not one by one).

        A task whose data cannot be used is an :class:`UnusableTask` (what ``get_task`` would
        raise for it), not an error: the listing goes on past it. Lazy: errors of the listing
        itself (a deleted project is :class:`LabelStudioNotFound`, an unreachable Label Studio
        :class:`LabelStudioUnavailable`) arise while iterating.
        """
        if ids is None:
            for task_id, data in self._paged(project_id, 0, None, self._page_size, {}):
                yield _listed(task_id, data)
            return
        wanted = set(ids)
        for first, last in _runs(sorted(wanted), self._page_size):
            for task_id, data in self._paged(project_id, first - 1, last, self._page_size, {}):
                if task_id in wanted:
                    yield _listed(task_id, data)

    def task_stamps(self, project_id: int) -> Iterator[TaskStamp]:
        """Every task of the project as a :class:`TaskStamp`, by ascending id: a listing of a
        few fields, without annotations (~20 times less of Label Studio's time)."""
        extra = {
            "fields": "task_only",
            "include": "id,updated_at,total_annotations,total_predictions",
        }
        for task_id, data in self._paged(project_id, 0, None, STAMP_PAGE_SIZE, extra):
            stamp = data.get("updated_at")
            yield TaskStamp(
                task_id, stamp if isinstance(stamp, str) else None,
                _count(data.get("total_annotations")), _count(data.get("total_predictions")),
            )  # fmt: skip

    def _paged(
        self, project_id: int, after: int, last: int | None, size: int, extra: dict[str, str]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(id, JSON)`` of the tasks with an id above ``after`` (and at most ``last``), by
        id, ``size`` per request."""
        what = f"listing tasks of project {project_id}"
        while True:
            page = self._task_page(project_id, after, last, size, extra)
            for data in page:
                task_id = data.get("id")
                if type(task_id) is not int:  # without an id there is no next page
                    raise LabelStudioError(
                        f"{what}: Label Studio at {self.url} listed a task without an integer id"
                    )
                if task_id <= after:  # the filter was ignored: paging would never end
                    raise LabelStudioError(
                        f"{what}: Label Studio at {self.url} ignored the task id filter; this "
                        "Label Studio version is not supported"
                    )
                after = task_id
                yield task_id, data
            if len(page) < size or (last is not None and after >= last):
                return

    def _task_page(
        self, project_id: int, after: int, last: int | None, size: int, extra: dict[str, str]
    ) -> list[dict[str, Any]]:
        """One page of the listing as Label Studio's JSON. Read past the SDK's models: a page
        of 100 annotated 1080p tasks took ~1 s to parse into them and dump back, against
        ~0.2 s to parse the JSON (``get_task`` still goes through the SDK)."""
        above = {"filter": "filter:tasks:id", "operator": "greater", "type": "Number"}
        items = [{**above, "value": after}]
        if last is not None:
            items.append({**above, "operator": "less", "value": last + 1})
        query = json.dumps({"filters": {"conjunction": "and", "items": items},
                            "ordering": ["tasks:id"]})  # fmt: skip
        params: dict[str, str | int] = {
            "project": project_id, "page": 1, "page_size": size, "fields": "all",
            "query": query, "resolve_uri": "false", **extra,
        }  # fmt: skip
        what = f"listing tasks of project {project_id}"
        with self._calling(what):
            response = self._http.get(
                f"{self.url}/api/tasks/", params=params,
                headers={"Authorization": self._authorization(), "Accept": "application/json"},
            )  # fmt: skip
            if response.is_error:
                raise self._status_error(what, response.status_code, _body(response))
            body = json.loads(response.content)
            tasks = body.get("tasks") if isinstance(body, dict) else None
            if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
                raise ValueError("no list of tasks")
            return tasks

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None:
        """Size and EXIF orientation of a task's image, from ``images_dir`` or downloaded.

        ``None`` for a ``data:`` URL (no file; the regions carry the size). Downloads land in
        ``scratch_dir`` (the caller removes them); ``task_id`` is needed for cloud URLs only.

        Raises:
            ImageNotAllowed: see worker.image_source for the policy.
            LabelStudioError: the download failed (subclasses as for any call).
            ls_panoptic.errors.ImageError: the file is not a readable image.
        """
        url = url.strip()
        if url.startswith("data:"):
            return None
        what = f"reading image {shown(url)}"
        try:
            local = image_source.local_image(self._images_dir, url) if self._images_dir else None
            if local is not None:
                return read_image_info(local)
            target = image_source.source_url(self.url, url, task_id)
        except ImageRefused as exc:
            raise ImageNotAllowed(str(exc)) from None
        except ValueError as exc:  # no file name in the URL
            raise LabelStudioError(f"{what}: {exc}") from None
        with self._calling(what):
            path = image_source.download(
                self._http, target, key_origin=image_source.origin(httpx.URL(self.url)),
                authorization=self._authorization, scratch_dir=scratch_dir,
                max_bytes=self._max_image_bytes,
            )  # fmt: skip
        return read_image_info(path)

    def _authorization(self) -> str:
        # the SDK's own header: the legacy token, or a fresh access token for a refresh token
        return self._sdk._client_wrapper.get_headers()["Authorization"]

    def registered_webhook(self, project_id: int, url: str) -> int | None:
        """The id of our webhook in the project (marked, or posting to ``url``), if any."""
        hooks = self._our_webhooks(project_id, url)
        return hooks[0] if hooks else None

    def register_webhook(self, project_id: int, url: str, token: str) -> int:
        """Make exactly one webhook of ours post ``WEBHOOK_ACTIONS`` of the project to ``url``.

        Idempotent: an existing one is updated (url, headers, actions, re-enabled) and extra
        copies are deleted. Label Studio sends ``Authorization: Bearer <token>`` with each POST.
        """
        settings: dict[str, Any] = {
            "headers": {"Authorization": f"Bearer {token}", WEBHOOK_MARKER: "1"},
            "actions": list(WEBHOOK_ACTIONS),
            "send_payload": True,
            "send_for_all_actions": False,
            "is_active": True,
        }
        hooks = self._our_webhooks(project_id, url)
        with self._calling(f"registering the webhook of project {project_id}"):
            if not hooks:
                hook = self._sdk.webhooks.create(url=url, project=project_id, **settings)
                return int(hook.id)
            self._sdk.webhooks.update(id=hooks[0], url=url, **settings)
            for extra in hooks[1:]:
                self._sdk.webhooks.delete(id=extra)
        return hooks[0]

    def touch_project(self, project_id: int) -> None:
        """An update of the project that changes nothing: Label Studio posts ``PROJECT_UPDATED``
        to the project's webhooks, inline, before it answers (``connect`` checks delivery so)."""
        with self._calling(f"updating project {project_id} (no change)"):
            self._sdk.projects.update(id=project_id)

    def _our_webhooks(self, project_id: int, url: str) -> list[int]:
        with self._calling(f"listing webhooks of project {project_id}"):
            hooks = self._sdk.webhooks.list(project=str(project_id))
        return sorted(
            h.id
            for h in hooks
            if h.id is not None
            and h.project == project_id
            and (h.url == url or WEBHOOK_MARKER in (h.headers or {}))
        )

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Translate whatever the SDK or httpx raises while doing ``what``."""
        try:
            yield
        except ApiError as exc:
            raise self._status_error(what, exc.status_code, exc.body) from exc
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status == 404:  # a missing file is not a deleted task
                raise LabelStudioError(
                    f"{what}: Label Studio at {self.url} has no such file (404)"
                ) from exc
            raise self._status_error(what, status, _body(exc.response)) from exc
        except httpx.TimeoutException as exc:
            raise LabelStudioUnavailable(
                f"{what}: Label Studio at {self.url} did not answer within {self._timeout:g} s"
            ) from exc
        except (httpx.TransportError, httpx.TooManyRedirects) as exc:
            raise LabelStudioUnavailable(
                f"{what}: cannot reach Label Studio at {self.url} ({type(exc).__name__}: {exc}); "
                "is it running, and is LABEL_STUDIO_URL right?"
            ) from exc
        except TooLarge as exc:
            raise LabelStudioError(f"{what}: {exc}; refused") from exc
        except ValueError as exc:  # JSON or pydantic errors: something else answers there
            raise LabelStudioError(
                f"{what}: the answer from {self.url} is not Label Studio's ({exc}); "
                "is LABEL_STUDIO_URL right?"
            ) from exc

    def _status_error(self, what: str, status: int | None, body: object) -> LabelStudioError:
        said = f"{what}: Label Studio at {self.url} answered {status}{_detail(body)}"
        if status in (401, 403):
            return LabelStudioAuthError(
                f"{said}; set LABEL_STUDIO_API_KEY to a valid legacy or personal access token "
                "of a user who can see the project"
            )
        if status == 404:
            return LabelStudioNotFound(f"{said}; it was deleted, or the id is wrong")
        if status is not None and (status >= 500 or status in _RETRYABLE):
            return LabelStudioUnavailable(f"{said}; retry later")
        return LabelStudioError(said)


def _dumped(task: Any) -> dict[str, Any]:
    """The JSON of a task as the SDK parsed it (unvalidated). Pydantic's warnings about fields
    of an unexpected type are silenced (the SDK's serializer does not pass ``warnings=False``
    on): :func:`_task` checks the shape and names what is wrong, per task."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Pydantic serializer warnings", UserWarning)
        data: dict[str, Any] = task.model_dump(mode="json")
    return data


def _task(data: Mapping[str, Any]) -> Task:
    try:
        return task_from_dict(data)
    except ValueError as exc:
        raise LabelStudioError(f"task {data.get('id')}: unusable task data: {exc}") from None


def _listed(task_id: int, data: Mapping[str, Any]) -> Task | UnusableTask:
    """A listed task, or what is wrong with it (the message ``get_task`` raises for it), or
    a :class:`PartialTask`."""
    try:
        task = _task(data)
    except LabelStudioError as exc:
        return UnusableTask(task_id, str(exc))
    partial = _partial(data)
    return PartialTask(task_id, f"task {task_id}: {partial}") if partial else task


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0


def _runs(ids: list[int], gap: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` of runs of the sorted ``ids`` whose neighbours are less than ``gap``
    apart: listed together, the ids between them cost less than a request each."""
    start = previous = None
    for task_id in ids:
        if start is None or previous is None or task_id - previous >= gap:
            if start is not None and previous is not None:
                yield start, previous
            start = task_id
        previous = task_id
    if start is not None and previous is not None:
        yield start, previous


def _partial(data: Mapping[str, Any]) -> str | None:
    """What shows the listed task incomplete: its annotations are not the ``annotations_ids``
    it lists, or its predictions fewer than ``total_predictions`` (fields of Label Studio's
    task listing; a listing without them is taken as whole)."""
    listed = data.get("annotations_ids")
    annotations = data.get("annotations") or []
    if isinstance(listed, str) and isinstance(annotations, list):
        expected = sorted(int(part) for part in listed.split(",") if part.strip().isdigit())
        got = sorted(
            a["id"] for a in annotations if isinstance(a, Mapping) and type(a.get("id")) is int
        )
        if expected != got:
            return f"the listing gave annotations {got}, the task has {expected}"
    total = data.get("total_predictions")
    predictions = data.get("predictions") or []
    if type(total) is int and isinstance(predictions, list) and len(predictions) < total:
        return f"the listing gave {len(predictions)} of {total} predictions"
    return None


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return response.text


def _detail(body: object) -> str:
    """A short reason from an error body: its ``detail``, never an HTML page."""
    if isinstance(body, Mapping):
        body = body.get("detail") or body.get("validation_errors") or ""
    text = " ".join(str(body).split())
    return f": {text[:200].rstrip('.')}" if text and not text.startswith("<") else ""

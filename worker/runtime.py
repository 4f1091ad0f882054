"""The worker process's context: built once when the worker starts, handed to jobs on demand.

Nothing happens at import: :func:`build` connects nothing until used, and :func:`running`
is what the ``worker`` command wraps around rq's work loop. Jobs call :func:`current`.

The context lives in a :class:`contextvars.ContextVar`, not a rebound global: rq's forking
worker runs each job in a child of the process that activated it (which inherits it), and a
``SimpleWorker`` runs jobs in the activating thread; tests activate their own context and
reset it afterwards.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from ls_panoptic.images import ImageInfo
from ls_panoptic.model import ConvertOptions, Task

from .config_cache import ConfigCache
from .dispatcher import Dispatcher
from .keys import Keys
from .labelstudio import LabelStudio, ProjectInfo, TaskStamp, UnusableTask
from .settings import Settings
from .store import Store

__all__ = [
    "LabelStudioAPI",
    "Runtime",
    "RuntimeNotActive",
    "activate",
    "build",
    "current",
    "running",
]


class RuntimeNotActive(RuntimeError):
    """A job ran in a process where no worker context was activated."""


class LabelStudioAPI(Protocol):
    """What the jobs need of :class:`~worker.labelstudio.LabelStudio` (tests pass a stub)."""

    def get_project(self, project_id: int) -> ProjectInfo: ...

    def get_task(self, task_id: int) -> tuple[int, Task]: ...

    def list_tasks(
        self, project_id: int, ids: Collection[int] | None = None
    ) -> Iterator[Task | UnusableTask]: ...

    def task_stamps(self, project_id: int) -> Iterator[TaskStamp]: ...

    def image_info(
        self, url: str, scratch_dir: Path, *, task_id: int | None = None
    ) -> ImageInfo | None: ...


@dataclass(frozen=True)
class Runtime:
    """Everything a job uses.

    Attributes:
        settings: the validated settings.
        redis: one client (binary replies: rq and the store need bytes).
        store: entries and task states.
        labelstudio: the Label Studio boundary.
        dispatcher: enqueues follow-up jobs, clears pending flags.
        config_cache: how long a sync may use the stored label config.
        scratch_dir: where downloaded images go (one subfolder per job, removed after).
    """

    settings: Settings
    redis: redis.Redis
    store: Store
    labelstudio: LabelStudioAPI
    dispatcher: Dispatcher
    config_cache: ConfigCache
    scratch_dir: Path

    @property
    def options(self) -> ConvertOptions:
        """The conversion options (``LS_PANOPTIC_*``)."""
        return self.settings.convert

    def clock(self) -> str:
        """Now, by the Redis server's clock (shared by every worker machine), ISO 8601 UTC."""
        seconds, micros = self.redis.time()
        stamp = dt.datetime.fromtimestamp(seconds, dt.timezone.utc) + dt.timedelta(
            microseconds=micros
        )
        return stamp.isoformat(timespec="microseconds")


def build(
    settings: Settings,
    *,
    connection: redis.Redis | None = None,
    labelstudio: LabelStudioAPI | None = None,
    scratch_dir: Path,
) -> Runtime:
    """The context for ``settings``; ``connection`` and ``labelstudio`` default to real ones.

    Raises:
        SettingsError: Label Studio is not configured (and no ``labelstudio`` was given).
    """
    connection = connection or redis.Redis.from_url(settings.redis_url)
    if labelstudio is None:
        settings.require_label_studio()  # both are set past this line
        labelstudio = LabelStudio(
            settings.label_studio_url or "",
            settings.label_studio_api_key or "",
            images_dir=settings.images_dir,
        )
    keys = Keys(settings.key_prefix)
    return Runtime(
        settings=settings,
        redis=connection,
        store=Store(connection, keys),
        labelstudio=labelstudio,
        dispatcher=Dispatcher(connection, settings),
        config_cache=ConfigCache(connection, keys, settings.config_ttl),
        scratch_dir=scratch_dir,
    )


_CURRENT: contextvars.ContextVar[Runtime] = contextvars.ContextVar("ls_panoptic_runtime")


@contextlib.contextmanager
def activate(runtime: Runtime) -> Iterator[Runtime]:
    """Make ``runtime`` the one :func:`current` returns, for the duration of the block."""
    token = _CURRENT.set(runtime)
    try:
        yield runtime
    finally:
        _CURRENT.reset(token)


def current() -> Runtime:
    """The active context (jobs call this).

    Raises:
        RuntimeNotActive: the job runs outside ``ls-panoptic worker`` (or an ``activate`` block).
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise RuntimeNotActive(
            "no worker context: run jobs with `ls-panoptic worker`, which builds it from the "
            "settings (or wrap the worker in worker.runtime.activate(...))"
        ) from None


@contextlib.contextmanager
def running(
    settings: Settings,
    *,
    connection: redis.Redis | None = None,
    labelstudio: LabelStudioAPI | None = None,
) -> Iterator[Runtime]:
    """Build, activate, and on exit tear down the context (its scratch folder, connections)."""
    scratch = Path(tempfile.mkdtemp(prefix="ls-panoptic-worker-"))
    try:
        runtime = build(
            settings, connection=connection, labelstudio=labelstudio, scratch_dir=scratch
        )
        with activate(runtime):
            yield runtime
        if labelstudio is None and isinstance(runtime.labelstudio, LabelStudio):
            runtime.labelstudio.close()
        if connection is None:
            runtime.redis.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

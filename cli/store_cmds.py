"""``ls-panoptic resync`` and ``ls-panoptic snapshot``: the live store from the command line.

``snapshot`` writes what ``convert`` writes, read from the store at one instant (see
:mod:`worker._store_snapshot`): by default one plain pickle ``{image key: {"panoptic_mask",
"inst2class"}}`` that appears atomically (``<output>.partial``, fsync, rename) and a sidecar
``<output stem>.meta.json`` beside it; with ``--format hf|coco-panoptic`` the folder of
``convert --format`` (:mod:`worker.snapshot_formats`). Exit status as ``convert``: 0 all entries
written, 1 some tasks failed (the others are written, one line per failure), 2 bad arguments or
settings.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import redis
from rq.job import Job, JobStatus

from ls_panoptic.errors import SnapshotError
from ls_panoptic.labels import labelset_from_config
from ls_panoptic.snapshot import sidecar_path, write_json_atomic
from ls_panoptic.writers import EntryWriter
from worker.dispatcher import Dispatcher
from worker.jobqueue import SERIALIZER
from worker.keys import Keys
from worker.labelstudio import LabelStudio, LabelStudioError
from worker.review_index import IndexBuilding, ReviewIndex
from worker.settings import Settings, SettingsError
from worker.snapshot_formats import write_formatted
from worker.store import SnapshotInfo, Store, StoreError

from .output_format import OutputFormat, format_options
from .report import task_progress
from .worker_cmd import load_settings

__all__ = ["resync", "snapshot"]

EXIT_FAILED = 1
#: seconds between polls of job statuses while waiting
POLL_SECONDS = 0.5
_DONE = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})


def _connect(settings: Settings) -> redis.Redis:
    connection = redis.Redis.from_url(settings.redis_url)
    try:
        connection.ping()
    except redis.RedisError as exc:
        where = settings.describe()["redis_url"]
        raise click.ClickException(f"cannot reach Redis at REDIS_URL ({where}): {exc}") from exc
    return connection


@click.command("resync")
@click.option("--project", type=click.IntRange(min=0), required=True, help="Project id.")
@click.option("--wait", is_flag=True, help="Wait until the resync and its syncs are done.")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Re-convert every task, not only the changed ones: after images were replaced in "
    "storage, or to retry failed conversions that resyncs leave alone until the annotation, the "
    "task or the label config changes. Also rebuilds the review page's index from scratch, "
    "here and now (the page says 'indexing N of M' meanwhile).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)
def resync(project: int, wait: bool, rebuild: bool, timeout: float) -> None:
    """Compare a Label Studio project with the store and repair it: sync new and changed
    tasks, drop deleted ones. A running worker (``ls-panoptic worker``) does the work."""
    settings = load_settings()
    dispatcher = Dispatcher(_connect(settings), settings)
    if rebuild:
        _rebuild_review_index(dispatcher.redis, settings, project)
    job_id = (dispatcher.rebuild_project if rebuild else dispatcher.resync_project)(project)
    what = "rebuild" if rebuild else "resync"
    click.echo(f"{what} of project {project} enqueued as job {job_id}")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    summary = _result(_wait_for(dispatcher, [job_id], deadline)[0])
    if summary.get("project_deleted"):
        click.echo(f"project {project} is gone from Label Studio: dropped from the store")
        return
    click.echo(
        f"{summary['listed']} tasks listed, {summary['to_sync']} to sync "
        f"({summary['coalesced']} already pending), {summary['dropped']} dropped; "
        f"label config {summary['config']}"
    )
    # the syncs it enqueued, and the pending ones it found covering the other tasks to sync
    jobs = _wait_for(dispatcher, [*summary["jobs"], *summary.get("pending", [])], deadline)
    failed = [job for job in jobs if job is not None and job.get_status() == JobStatus.FAILED]
    for job in failed:
        click.echo(f"job {job.id} ({job.description}) failed: {_last_line(job)}", err=True)
    click.echo(f"{len(jobs) - len(failed)} syncs done, {len(failed)} failed")
    if failed:
        raise SystemExit(EXIT_FAILED)


def _rebuild_review_index(connection: redis.Redis, settings: Settings, project: int) -> None:
    """The review page's index of ``project`` rebuilt from the store's states (says nothing
    for a project the store does not hold)."""
    index = ReviewIndex(connection, Keys(settings.key_prefix))
    try:
        count = index.rebuild(project)
    except IndexBuilding as exc:
        click.echo(f"review index: {exc} (by another process); not started again")
        return
    if count:
        click.echo(f"review index of project {project} rebuilt: {count} tasks")


def _wait_for(dispatcher: Dispatcher, job_ids: list[str], deadline: float) -> list[Job | None]:
    """The jobs once all are done (``None``: expired, so done long ago)."""
    while True:
        jobs = Job.fetch_many(job_ids, connection=dispatcher.redis, serializer=SERIALIZER)
        if all(job is None or job.get_status() in _DONE for job in jobs):
            return jobs
        if time.monotonic() > deadline:
            running = sum(job is not None and job.get_status() not in _DONE for job in jobs)
            raise click.ClickException(
                f"{running} job(s) still waiting or running; is a worker running "
                "(ls-panoptic worker)? Failed jobs are retried with backoff: see /rq"
            )
        time.sleep(POLL_SECONDS)


def _result(job: Job | None) -> dict[str, Any]:
    if job is None:
        raise click.ClickException("the resync job expired before its result was read")
    if job.get_status() != JobStatus.FINISHED:
        raise click.ClickException(f"the resync job {job.id} failed: {_last_line(job)}")
    value = job.return_value()
    if not isinstance(value, dict):
        raise click.ClickException(f"the resync job {job.id} returned {value!r}")
    return value


def _last_line(job: Job) -> str:
    result = job.latest_result()
    lines = (result.exc_string or "" if result is not None else "").strip().splitlines()
    return lines[-1] if lines else "no details"


@click.command("snapshot")
@click.option("--project", type=click.IntRange(min=0), required=True, help="Project id.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Snapshot to write (.pkl; OUTPUT.meta.json is written beside it), or the folder "
    "that --format hf / coco-panoptic writes (ls-panoptic.meta.json inside it).",
)
@format_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def snapshot(
    project: int,
    output: Path,
    output_format: str,
    splits: dict[str, float],
    seed: int,
    copy_images: bool,
    quiet: bool,
) -> None:
    """Write the project's entries from the store, as they are at one instant, in the format
    ``ls-panoptic convert`` writes (a pickle plus sidecar JSON by default). Photos (--format hf,
    --copy-images) come from LS_PANOPTIC_IMAGES_DIR or are downloaded from Label Studio."""
    settings = load_settings()
    chosen = OutputFormat(output_format, splits, seed, copy_images)
    chosen.check(output, has_images=True)  # the photos come from the store's image source
    store = Store(_connect(settings), Keys(settings.key_prefix))
    record = store.get_project(project)
    if record is None:
        raise click.ClickException(
            f"project {project} is not in the store: connect it (ls-panoptic connect) or "
            f"run `ls-panoptic resync --project {project} --wait`"
        )
    writer = None
    if chosen.name != "pickle":
        labels = labelset_from_config(record.label_config)  # as the worker converted with
        writer = chosen.writer(output, labels, settings.convert)
    try:
        if writer is None:
            info, sidecar = _write_atomic(store, project, output), sidecar_path(output)
        else:
            photos = chosen.name == "hf" or copy_images
            info = _write_folder(store, project, writer, settings, photos=photos, quiet=quiet)
            sidecar = writer.sidecar
        write_json_atomic(sidecar, store.snapshot_meta(project, info))
    except (StoreError, SnapshotError, LabelStudioError) as exc:
        raise click.ClickException(str(exc)) from exc
    for failure in info.failures:
        click.echo(failure.message, err=True)
    click.echo(f"{info.count} entries -> {output} (+ {sidecar.name}); {len(info.failures)} failed")
    if info.failures:
        raise SystemExit(EXIT_FAILED)


def _write_folder(
    store: Store,
    project: int,
    writer: EntryWriter,
    settings: Settings,
    *,
    photos: bool,
    quiet: bool,
) -> SnapshotInfo:
    """The pinned entries into ``writer``, each photo read as the worker reads it."""
    images = _image_source(settings) if photos else None
    try:
        info = store.pin_snapshot(project)
        with (
            tempfile.TemporaryDirectory(prefix="ls-panoptic-snapshot-") as scratch,
            task_progress(info.count, "writing", enabled=not quiet) as advance,
        ):
            return write_formatted(
                store, info, writer, images=images, scratch_dir=Path(scratch), on_entry=advance
            )
    finally:
        if images is not None:
            images.close()


def _image_source(settings: Settings) -> LabelStudio:
    """The worker's image reading: LS_PANOPTIC_IMAGES_DIR, else Label Studio's own downloads."""
    try:
        settings.require_label_studio()
    except SettingsError as exc:
        raise click.UsageError(f"photos for the snapshot: {exc}") from exc
    return LabelStudio(
        settings.label_studio_url or "",
        settings.label_studio_api_key or "",
        images_dir=settings.images_dir,
    )


def _write_atomic(store: Store, project: int, output: Path) -> SnapshotInfo:
    """Stream the snapshot to ``<output>.partial``, fsync, rename: never a half file."""
    partial = output.with_name(output.name + ".partial")
    try:
        with open(partial, "wb") as file:
            info = store.write_snapshot(project, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, output)
    except OSError as exc:
        raise SnapshotError(f"cannot write {output}: {exc.strerror}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return info

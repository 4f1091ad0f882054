"""``ls-panoptic worker``: run the jobs (pull, convert, store) with rq, JSON-serialised.

The periodic resync rides on rq's scheduler rather than a loop of our own: a worker started
``--with-scheduler`` schedules a ``resync_all`` job at the next multiple of
``LS_PANOPTIC_RESYNC_INTERVAL`` seconds; that job enqueues one resync per known project and
schedules the next. The job id names the due time, so any number of workers agree on one job
per period, and rq's scheduler lock makes one of them enqueue it. The same scheduler enqueues
the retries of failed jobs after their backoff, so run at least one worker with it.
"""

from __future__ import annotations

import click
import redis
from rq import Worker

from worker import runtime
from worker.labelstudio import LabelStudioError
from worker.queueing import SERIALIZER
from worker.settings import Settings, SettingsError

__all__ = ["worker"]


def load_settings() -> Settings:
    """Settings from the environment; a bad one exits 2 with one line naming the variable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option(
    "--with-scheduler",
    is_flag=True,
    help="Also run rq's scheduler: retries after backoff and the periodic resync "
    "(LS_PANOPTIC_RESYNC_INTERVAL). At least one worker should run it.",
)
def worker(burst: bool, with_scheduler: bool) -> None:
    """Run a worker on the LS_PANOPTIC_QUEUE queue: each job pulls a task's current state
    from Label Studio, converts it and stores the entry in Redis.

    \b
    Needs REDIS_URL, LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
    """
    settings = load_settings()
    try:
        settings.require_label_studio()
        with runtime.running(settings) as rt:
            rt.redis.ping()
            click.echo(f"ls-panoptic worker: {settings.describe()}", err=True)
            if with_scheduler and not burst:
                rt.dispatcher.schedule_resync_all(settings.resync_interval)
            rq_worker = Worker([rt.dispatcher.queue], connection=rt.redis, serializer=SERIALIZER)
            rq_worker.work(burst=burst, with_scheduler=with_scheduler)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    except LabelStudioError as exc:  # e.g. a personal access token refused at start
        raise click.ClickException(str(exc)) from exc
    except redis.ConnectionError as exc:
        raise click.ClickException(
            f"cannot reach Redis at REDIS_URL ({settings.describe()['redis_url']}): {exc}"
        ) from exc

"""``ls-panoptic worker``: run the jobs (pull, convert, store) with rq, JSON-serialised.

The periodic resync rides on rq's scheduler rather than a loop of our own: a worker started
``--with-scheduler`` schedules a ``resync_all`` job at the next multiple of
``LS_PANOPTIC_RESYNC_INTERVAL`` seconds; that job enqueues one resync per known project and
schedules the next. The job id names the due time, so any number of workers agree on one job
per period, and rq's scheduler lock makes one of them enqueue it. The same scheduler enqueues
the retries of failed jobs after their backoff, so run at least one worker with it.

Crashes: a job whose worker died with it (SIGKILL, a lost container) stays "started" until its
heartbeat expires (``JOB_MONITORING_INTERVAL`` + 60 s); the next maintenance round of any live
worker then hands it to its retries, and takes over the dead worker's scheduler once that lock
expires (61 s). rq runs that round every 10 minutes by default; ``MAINTENANCE_INTERVAL`` makes it
about a minute. When rq's loop ends because Redis went away (rq quits then), the command waits
for Redis and starts a new loop instead of exiting: a Redis restart needs no operator.
"""

from __future__ import annotations

import itertools
import time
from types import FrameType

import click
import redis
from rq.exceptions import StopRequested

from worker import runtime
from worker.jobqueue import SERIALIZER, Worker
from worker.labelstudio import LabelStudioError
from worker.settings import Settings, SettingsError

__all__ = ["JOB_MONITORING_INTERVAL", "MAINTENANCE_INTERVAL", "worker"]

#: seconds between rq's maintenance rounds (abandoned jobs retried, a dead scheduler taken over);
#: each round is a handful of Redis calls per queue
MAINTENANCE_INTERVAL = 15
#: rq's worker TTL; an idle worker wakes from its blocking dequeue every ``WORKER_TTL - 15`` s,
#: which is what lets the maintenance round run on time
WORKER_TTL = MAINTENANCE_INTERVAL + 15
#: seconds between the heartbeats of a running job (rq gives it up 60 s after the last one)
JOB_MONITORING_INTERVAL = 10
#: seconds between attempts to reach Redis again once rq's loop lost it
RECONNECT_SECONDS = (1, 2, 4, 8, 15)


class _Worker(Worker):
    """The service's forking rq worker, remembering whether it was asked to stop (SIGTERM,
    SIGINT)."""

    stop_asked = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_asked = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]


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
            _work(rt, burst, with_scheduler)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    except LabelStudioError as exc:  # e.g. a personal access token refused at start
        raise click.ClickException(str(exc)) from exc
    except redis.ConnectionError as exc:
        raise click.ClickException(
            f"cannot reach Redis at REDIS_URL ({settings.describe()['redis_url']}): {exc}"
        ) from exc


def _work(rt: runtime.Runtime, burst: bool, with_scheduler: bool) -> None:
    """rq's work loop; started again when it ends unasked (rq quits when it loses Redis)."""
    while True:
        # SERIALIZER (worker.jobqueue.JobSerializer) is also the one rq hands its scheduler and
        # every job it loads: JSON only, and a planted non-JSON ``meta`` cannot stop the loop
        rq_worker = _Worker(
            [rt.dispatcher.queue], connection=rt.redis, serializer=SERIALIZER,
            worker_ttl=WORKER_TTL, maintenance_interval=MAINTENANCE_INTERVAL,
            job_monitoring_interval=JOB_MONITORING_INTERVAL,
        )  # fmt: skip
        try:
            rq_worker.work(burst=burst, with_scheduler=with_scheduler)
        except redis.RedisError as exc:  # rq's own teardown could not reach Redis either
            click.echo(f"ls-panoptic worker: lost Redis ({exc})", err=True)
        if burst or rq_worker.stop_asked:
            return
        click.echo("ls-panoptic worker: rq's loop ended; restarting once Redis answers", err=True)
        try:  # rq's signal handlers are still installed: SIGTERM sets stop_asked (or raises)
            if not _wait_for_redis(rt.redis, rq_worker):
                return
        except StopRequested:
            return
        click.echo("ls-panoptic worker: Redis answers again; starting a new rq worker", err=True)


def _wait_for_redis(connection: redis.Redis, rq_worker: _Worker) -> bool:
    """Until Redis answers ``PING`` (not while it is still loading its data), with backoff;
    ``False`` when ``rq_worker`` was asked to stop meanwhile."""
    for delay in itertools.chain(RECONNECT_SECONDS, itertools.repeat(RECONNECT_SECONDS[-1])):
        time.sleep(delay)
        if rq_worker.stop_asked:
            return False
        try:
            connection.ping()
            return True
        except redis.RedisError:
            continue
    return False  # unreachable: the delays never run out

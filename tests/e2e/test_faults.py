"""Faults the live service survives without losing an event it accepted (answered 2xx).

Every test runs the real pieces: Label Studio 1.23.2, ``ls-panoptic serve`` and ``ls-panoptic
worker --with-scheduler`` as child processes, and Redis, with Label Studio's webhooks going
through a :class:`~tests.e2e._relay.WebhookRelay` that passes every event on, in order, and
records the backend's answers. While Label Studio's annotations change, one fault strikes:

(a) the worker is killed with SIGKILL in the middle of a conversion (12-megapixel images with
    300 regions each take seconds to convert): first its work-horse alone (what the kernel's
    OOM killer does), then the whole worker (main process, work-horse, scheduler: a crashed
    container), and a new worker is started;
(b) Redis (our own ``redis-server``, AOF on, on a free port) is restarted during a burst;
(c) Label Studio becomes unreachable for the worker (a TCP relay in front of it closes) for
    ``--fault-outage`` seconds (default 20), then comes back;
(d) the backend is killed (SIGKILL) and restarted, then stopped (SIGTERM) and restarted,
    during a burst.

Then, with no resync, every task whose last event the backend accepted must reach the entry of
the batch conversion of a fresh export (events it refused, 5xx or no answer, are Label
Studio's loss, which the periodic resync repairs); the manifest must point at whole blobs only.
Finally ``resync --wait`` makes the whole store equal to the batch conversion, bit for bit.

Jobs retry on ``LS_PANOPTIC_RETRY_INTERVALS`` doubling from 1 s (the backoff's shape, faster
than the production default); no periodic resync runs (it would hide a lost event).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
from PIL import Image
from rq.job import Job, JobStatus

from devstack.labelstudio import LabelStudioServer
from devstack.supervisor import log_tail
from worker.jobqueue import SERIALIZER
from worker.settings import Settings

from ._relay import PASS_THROUGH, WebhookRelay
from ._services import (
    RedisServer,
    TcpGate,
    backend_process,
    free_port,
    kill_session,
    session_pids,
    wait_until,
    worker_process,
)
from ._sync_helpers import (
    LiveProject,
    open_live_project,
    run_resync,
    served_settings,
    small_image,
)
from .lsclient import LabelStudioClient
from .scene import LABELS, ResultBuilder, SceneImage, plant_result

pytestmark = pytest.mark.e2e

#: seconds the accepted events may take to be processed once the fault is over
SETTLE_TIMEOUT = 90.0
#: seconds for a crashed worker's job: rq gives it up once its heartbeat expired
#: (``JOB_MONITORING_INTERVAL`` + 60 s) and hands it to its retries at the next maintenance round
#: of a live worker (``MAINTENANCE_INTERVAL``): about 85 s here; the rest is margin
CRASH_RECOVERY_TIMEOUT = 240.0


def _intervals(outage: float) -> tuple[int, ...]:
    """Retry intervals doubling from 1 s until they outlast twice ``outage``."""
    intervals = [1]
    while sum(intervals) <= 2 * outage:
        intervals.append(intervals[-1] * 2)
    return tuple(intervals)


@dataclass
class Rig:
    """One fault test's project, relay and bookkeeping."""

    settings: Settings
    live: LiveProject
    relay: WebhookRelay
    rng: random.Random
    backend_port: int  # where the relay posts
    annotations: dict[int, list[int]] = field(default_factory=dict)  # task -> annotation ids

    def backend(self) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
        """``ls-panoptic serve`` on the port the relay posts to, until the block ends (each
        start appends to the same ``backend.log``)."""
        return backend_process(self.settings, self.backend_port, self.live.root / "backend.log")

    def connect(self) -> None:
        """Label Studio's webhook for the project goes through the relay from now on."""
        self.live.connect(self.relay.url)

    def burst(self, count: int, result: Callable[[str], list[dict[str, Any]]]) -> None:
        """``count`` annotation saves on random tasks: a new annotation, or an update."""
        for _ in range(count):
            name = self.rng.choice(sorted(self.live.tasks))
            task = self.live.tasks[name]
            mine = self.annotations.setdefault(task, [])
            time.sleep(0.02)  # Label Studio stamps with microseconds: keep updated_at ordered
            if mine and self.rng.random() < 0.5:
                self.live.ls.update_annotation(self.rng.choice(mine), result(name))
            else:
                mine.append(int(self.live.ls.create_annotation(task, result(name))["id"]))

    def planted(self, name: str) -> list[dict[str, Any]]:
        builder = ResultBuilder(*self.live.sizes[name], seed=self.rng.randrange(1 << 30))
        return plant_result(builder, self.rng.randrange(4))

    def behind(self, batch: dict[str, Any]) -> list[str]:
        """Tasks whose last webhook the backend accepted but whose entry is not (yet) the
        batch conversion's; events name tasks (annotation saves, task imports)."""
        names = {task: name for name, task in self.live.tasks.items()}
        last = {task: event for event in self.relay.events for task in event.tasks}
        late = []
        for task, event in sorted(last.items()):
            if task in names and event.accepted:
                stored = self.live.rt.store.get_entry(self.live.project, task)
                if not _same(stored.payload() if stored else None, batch.get(names[task])):
                    late.append(f"task {task} ({names[task]}): last {event.describe()}")
        return late

    def assert_accepted_processed(self, step: str, timeout: float) -> dict[str, int]:
        """Every accepted event processed within ``timeout`` s of now; returns counts."""
        self.relay.settle()
        batch = pickle.loads(self.live.batch(step)[0])
        deadline = time.monotonic() + timeout
        while late := self.behind(batch):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(late)} accepted events not processed {timeout:g} s after {step}:\n"
                    + "\n".join([*late, "all events:", *self.relay.log()]),
                    pytrace=False,
                )
            time.sleep(0.5)
        events = self.relay.events
        accepted = sum(event.accepted for event in events)
        return {"events": len(events), "accepted": accepted, "refused": len(events) - accepted}

    def assert_converged(self, step: str) -> None:
        """``resync --wait``, then the whole store is the batch conversion, blobs whole."""
        run_resync(self.live)
        self.live.assert_store_equals_batch(step)
        self.live.assert_blobs_whole()


def _same(stored: dict[str, Any] | None, expected: dict[str, Any] | None) -> bool:
    if stored is None or expected is None:
        return stored is expected
    mask, want = stored["panoptic_mask"], expected["panoptic_mask"]
    return bool(
        mask.shape == want.shape
        and np.array_equal(mask, want)
        and stored["inst2class"] == expected["inst2class"]
    )


@contextlib.contextmanager
def _rig(
    server: LabelStudioServer,
    ls_client: LabelStudioClient,
    root: Path,
    redis_url: str,
    connection: redis.Redis,
    outage: float = 5.0,
) -> Iterator[Rig]:
    """A project on the store at ``redis_url`` (``connection``) whose webhook will go through a
    pass-through relay to the backend on a free port; the test starts that backend
    (:meth:`Rig.backend`) when it wants it. The service's settings: tokens, no periodic resync,
    retries that outlast an ``outage`` of that many seconds."""
    settings = served_settings(redis_url, server, retry_intervals=_intervals(outage))
    port = free_port()
    title = f"faults {root.name}"
    with (
        open_live_project(server, ls_client, settings, connection, root, title) as live,
        WebhookRelay(f"http://127.0.0.1:{port}", PASS_THROUGH, seed=0) as relay,
    ):
        yield Rig(settings, live, relay, random.Random(root.name), port)


RigOpener = Callable[..., contextlib.AbstractContextManager[Rig]]


@pytest.fixture
def open_rig(
    label_studio: LabelStudioServer, ls_client: LabelStudioClient, tmp_path: Path
) -> RigOpener:
    """``open_rig(redis_url, connection, outage=5.0)``: :func:`_rig` on the session's Label
    Studio, in the test's ``tmp_path``."""
    return functools.partial(_rig, label_studio, ls_client, tmp_path)


def _small_images(count: int) -> list[SceneImage]:
    return [small_image(f"small_{i}.png", 160, 120, seed=i) for i in range(count)]


def _wait_idle(rig: Rig, timeout: float = SETTLE_TIMEOUT) -> None:
    """Until the relay delivered everything and the queue is empty with nothing running."""
    rig.relay.settle()
    queue = rig.live.rt.dispatcher.queue
    wip = queue.started_job_registry.key
    wait_until(
        lambda: queue.count == 0 and rig.live.rt.redis.zcard(wip) == 0, timeout, "an idle queue"
    )


# (a) ------------------------------------------------------------------------------------------

HEAVY = (4000, 3000)  # 12 megapixels
HEAVY_REGIONS = 300


def _heavy_image(name: str) -> SceneImage:
    """A flat 12-megapixel PNG (a few kB: uploading it is cheap, converting over it is not)."""
    buffer = io.BytesIO()
    Image.new("RGB", HEAVY, (90, 140, 60)).save(buffer, "PNG")
    return SceneImage(name, buffer.getvalue(), *HEAVY)


def _heavy_result(rig: Rig, name: str) -> list[dict[str, Any]]:
    """300 polygons, ellipses and rotated rectangles over 12 megapixels: seconds of work."""
    rng = random.Random(rig.rng.randrange(1 << 30))
    builder = ResultBuilder(*rig.live.sizes[name], seed=rng.randrange(1 << 30))
    result = []
    for i in range(HEAVY_REGIONS):
        label, shape = LABELS[i % len(LABELS)], i % 3
        if shape == 0:
            points = [(rng.random(), rng.random()) for _ in range(12)]
            result.append(builder.polygon(label, points))
        elif shape == 1:
            centre, radii = (rng.random(), rng.random()), (rng.uniform(0.05, 0.4), 0.2)
            result.append(builder.ellipse(label, centre, radii, rng.uniform(0, 90)))
        else:
            box = (rng.random() * 0.7, rng.random() * 0.7, rng.uniform(0.1, 0.3), 0.2)
            result.append(builder.rectangle(label, box, rng.uniform(-40, 40)))
    return result


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _horse(worker: subprocess.Popen[bytes]) -> int | None:
    """rq's work-horse of ``worker``: the member of its session in a group of its own."""
    horses = [
        pid for pid in session_pids(worker.pid) if pid != worker.pid and int(_stat(pid)[2]) == pid
    ]
    return horses[0] if horses else None


def _cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, clock ticks (USER_HZ)


def _converting_horse(rig: Rig, worker: subprocess.Popen[bytes]) -> tuple[int, str]:
    """Wait until a work-horse has spent 0.3 s of CPU (pulling the task is mostly waiting for
    Label Studio; converting is all CPU): its PID and its job's id."""
    found: list[tuple[int, str]] = []
    wip = rig.live.rt.dispatcher.queue.started_job_registry.key

    def converting() -> bool:
        horse = _horse(worker)
        with contextlib.suppress(OSError, IndexError):
            started = rig.live.rt.redis.zrange(wip, 0, -1)
            if horse and started and _cpu_seconds(horse) >= 0.3:
                member = started[0]  # "<job id>:<execution id>"
                job_id = member.decode() if isinstance(member, bytes) else str(member)
                found.append((horse, job_id.split(":")[0]))
        return bool(found)

    wait_until(converting, 120, "a work-horse converting", interval=0.05)
    return found[0]


def _job_status(rig: Rig, job_id: str) -> JobStatus | None:
    job = Job.fetch(job_id, connection=rig.live.rt.redis, serializer=SERIALIZER)
    return job.get_status()


@contextlib.contextmanager
def _logs_on_failure(*logs: Path) -> Iterator[None]:
    """A failure inside also shows the end of each worker's log (the processes are gone by the
    time pytest reports, and their temporary folder soon after)."""
    try:
        yield
    except pytest.fail.Exception as exc:
        tails = [f"--- end of {log.name}:\n{log_tail(log)}" for log in logs if log.exists()]
        pytest.fail("\n".join([str(exc), *tails]), pytrace=False)


def test_worker_killed_mid_conversion_loses_no_accepted_event(
    open_rig: RigOpener, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with open_rig(redis_url, redis_client) as rig, rig.backend():
        rig.connect()
        rig.live.upload([_heavy_image(f"heavy_{i}.png") for i in range(3)])
        heavy = functools.partial(_heavy_result, rig)
        with worker_process(rig.settings, tmp_path / "worker-1.log") as worker:
            _wait_idle(rig)
            rig.burst(1, heavy)  # one annotation: one job
            horse, job_id = _converting_horse(rig, worker)
            os.kill(horse, signal.SIGKILL)  # what the OOM killer does; the worker lives on
            killed_at = time.monotonic()
            rig.live.assert_blobs_whole()
            rig.assert_accepted_processed("horse-killed", SETTLE_TIMEOUT)
            print(f"(a) work-horse {horse} killed converting (job {job_id}); retried, all done "
                  f"{time.monotonic() - killed_at:.1f} s later")  # fmt: skip

            rig.burst(2, heavy)
            _, job_id = _converting_horse(rig, worker)
            killed = kill_session(worker.pid)  # a crashed container: every process at once
            killed_at = time.monotonic()
        assert len(killed) >= 3, killed  # the worker, its scheduler and its work-horse
        assert _job_status(rig, job_id) == JobStatus.STARTED  # killed mid-conversion
        rig.live.assert_blobs_whole()
        logs = (tmp_path / "worker-1.log", tmp_path / "worker-2.log")
        with worker_process(rig.settings, logs[1]), _logs_on_failure(*logs):
            counts = rig.assert_accepted_processed("worker-crashed", CRASH_RECOVERY_TIMEOUT)
            print(f"(a) worker crashed ({len(killed)} processes) converting job {job_id}; a new "
                  f"worker processed every accepted event {time.monotonic() - killed_at:.0f} s "
                  f"later; {counts}")  # fmt: skip
            rig.assert_converged("final")


# (b) ------------------------------------------------------------------------------------------


def test_redis_restarted_during_a_burst_loses_no_accepted_event(
    open_rig: RigOpener, tmp_path: Path
) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    with RedisServer(binary, tmp_path / "redis") as server:
        connection = redis.Redis.from_url(server.url, socket_timeout=10)
        with (
            open_rig(server.url, connection) as rig,
            rig.backend(),
            worker_process(rig.settings, tmp_path / "worker.log") as worker,
            ThreadPoolExecutor(1) as pool,
        ):
            rig.connect()
            rig.live.upload(_small_images(6))
            _wait_idle(rig)
            burst = pool.submit(rig.burst, 40, rig.planted)
            time.sleep(1.5)
            server.stop()
            down = time.monotonic()
            time.sleep(2.0)
            restarting = time.monotonic()
            server.start()
            burst.result()
            counts = rig.assert_accepted_processed("redis-restarted", SETTLE_TIMEOUT)
            while_down = [
                answer
                for event in rig.relay.events
                for answer in event.answers
                if answer.sent > down and answer.answered < restarting
            ]
            assert while_down, "no webhook reached the backend while Redis was down"
            assert not [a for a in while_down if a.ok], "a 2xx answer while Redis was down"
            assert worker.poll() is None, "the worker died with Redis"
            print(f"(b) Redis restarted: {len(while_down)} webhook answers while it was down, "
                  f"none 2xx; every accepted event processed; {counts}")  # fmt: skip
            rig.assert_converged("final")
        connection.close()


# (c) ------------------------------------------------------------------------------------------


def test_label_studio_unreachable_then_back_loses_no_accepted_event(
    request: pytest.FixtureRequest,
    label_studio: LabelStudioServer,
    open_rig: RigOpener,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    outage = float(request.config.getoption("--fault-outage", 20.0))
    ls_address = urlsplit(label_studio.url)
    with (
        TcpGate((str(ls_address.hostname), int(ls_address.port or 80))) as gate,
        open_rig(redis_url, redis_client, outage) as rig,
        rig.backend(),  # reaches Label Studio directly, the worker only through the gate
        worker_process(replace(rig.settings, label_studio_url=gate.url), tmp_path / "worker.log"),
    ):
        rig.connect()
        rig.live.upload(_small_images(6))
        _wait_idle(rig)
        gate.close()
        cut = time.monotonic()
        rig.burst(20, rig.planted)  # Label Studio works; the worker cannot reach it
        retrying = rig.live.rt.dispatcher.queue.scheduled_job_registry.key
        wait_until(lambda: rig.live.rt.redis.zcard(retrying) > 0, outage, "a retry")
        time.sleep(max(0.0, cut + outage - time.monotonic()))
        gate.open()
        back = time.monotonic()
        counts = rig.assert_accepted_processed("label-studio-back", SETTLE_TIMEOUT + outage)
        after = time.monotonic() - back
        print(f"(c) Label Studio unreachable for {back - cut:.0f} s; every accepted event "
              f"processed {after:.1f} s after it came back; {counts}")  # fmt: skip
        rig.assert_converged("final")


# (d) ------------------------------------------------------------------------------------------


def test_backend_restarted_during_a_burst_loses_no_accepted_event(
    open_rig: RigOpener, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    with (
        open_rig(redis_url, redis_client) as rig,
        worker_process(rig.settings, tmp_path / "worker.log"),
        ThreadPoolExecutor(1) as pool,
    ):
        with rig.backend() as backend:
            rig.connect()
            rig.live.upload(_small_images(6))
            _wait_idle(rig)
            burst = pool.submit(rig.burst, 50, rig.planted)
            time.sleep(1.0)
            kill_session(backend.pid)  # a crash: gunicorn's master and worker at once
        with rig.backend():  # restarted; then stopped with SIGTERM
            time.sleep(1.0)
        with rig.backend():  # and started again
            burst.result()
            counts = rig.assert_accepted_processed("backend-restarted", SETTLE_TIMEOUT)
            assert counts["refused"] > 0, "no webhook arrived while the backend was down"
            print(f"(d) backend crashed and restarted, then restarted gracefully; every "
                  f"accepted event processed; {counts}")  # fmt: skip
            rig.assert_converged("final")

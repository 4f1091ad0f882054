"""What bench/service_bench.py runs on: its processes, its Redis database, webhook payloads
shaped like Label Studio's and a keep-alive HTTP load generator; and its parts 2 and 3, which
need a real Label Studio (devstack/labelstudio.py), the backend and a worker together.

Every process is started by devstack's supervisor and stopped by its PID (SIGTERM, then SIGKILL
after ``STOP_TIMEOUT``); the Redis database is flushed before and after use.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import re
import secrets
import socket
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from devstack.services import ls_panoptic_command, start_backend, start_worker
from devstack.services import service_env as process_env
from devstack.supervisor import Process, Stack, SupervisorError, free_port, log_tail

REPO = Path(__file__).resolve().parents[1]
QUEUE = "lsp-bench"
PREFIX = "lspbench"
#: seconds to wait after SIGTERM before SIGKILL
STOP_TIMEOUT = 20.0
#: seconds one benchmark request may take (a failure, not a slow sample, beyond)
REQUEST_TIMEOUT = 10.0
#: ids in a payload template, replaced per request (long: they cannot occur by chance)
_MARKS = {"project": b"918273645101", "task": b"918273645202", "annotation": b"918273645303"}

MakeRequest = Callable[[int], tuple[str, str, bytes | None]]


class BenchError(RuntimeError):
    """Something the bench needs did not work; the message says what and where the log is."""


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) of durations, in milliseconds."""
    ordered = sorted(seconds)

    def rank(q: float) -> float:
        return 1000 * ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def service_env(
    redis_url: str, webhook_token: str, api_token: str, label_studio: tuple[str, str] | None = None
) -> dict[str, str]:
    """The environment of ``ls-panoptic serve``/``worker``: ours, none of the caller's settings."""
    settings = dict(
        REDIS_URL=redis_url,
        WEBHOOK_TOKEN=webhook_token,
        API_TOKEN=api_token,
        LS_PANOPTIC_QUEUE=QUEUE,
        LS_PANOPTIC_KEY_PREFIX=PREFIX,
        LS_PANOPTIC_RESYNC_INTERVAL="0",
    )
    if label_studio is not None:
        settings.update(LABEL_STUDIO_URL=label_studio[0], LABEL_STUDIO_API_KEY=label_studio[1])
    return process_env(settings, inherit_options=False)


def _failed(exc: SupervisorError) -> BenchError:
    """A process of the bench failed: the message with the tail of its log."""
    tail = log_tail(exc.log, 30) if exc.log is not None else ""
    return BenchError(f"{exc}; {exc.log}:\n{tail}")


@contextmanager
def bench_redis(url: str) -> Iterator[redis.Redis]:
    """A bytes client on the bench's own database, flushed before and after."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchError(
            f"Redis at {url} is unreachable ({exc}); start one or pass --redis-url"
        ) from None
    if stale := client.dbsize():
        print(f"note: flushing {stale} leftover keys in {url}", flush=True)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def _stat(pid: str) -> list[str]:
    """``/proc/<pid>/stat`` fields after the command name (index 0 is field 3, the state)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its children (gunicorn workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(entry.name)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        if entry.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Backend:
    url: str
    log: Path
    pid: int  # the gunicorn master

    def cpu_seconds(self) -> float:
        """CPU used so far by the gunicorn master and workers (not Redis, not the clients)."""
        return process_tree_cpu(self.pid)

    def server_ms(self, since: int, path: str = "/webhook") -> list[float]:
        """Server-side milliseconds of the requests to ``path`` logged past byte ``since``
        (the app's own ``request ... ms=`` line: from before_request to after_request)."""
        with self.log.open("rb") as file:
            file.seek(since)
            text = file.read().decode(errors="replace")
        return [
            float(m) for m in re.findall(rf"path={re.escape(path)} status=2\d\d ms=([\d.]+)", text)
        ]

    def log_size(self) -> int:
        return self.log.stat().st_size


@contextmanager
def serve_backend(
    env: dict[str, str], log_dir: Path, options: Sequence[str] = ()
) -> Iterator[Backend]:
    """``ls-panoptic serve`` on a free port (gunicorn; its default workers and threads unless
    ``options`` says otherwise, e.g. ``["--threads", "4"]``), once healthy."""
    log = log_dir / "serve.log"
    with Stack(STOP_TIMEOUT) as stack:
        try:
            proc = start_backend(stack, env, free_port(), log, options, cwd=REPO, append=True)
        except SupervisorError as exc:
            raise _failed(exc) from None
        yield Backend(proc.url or "", proc.log, proc.pid)


@contextmanager
def run_worker(env: dict[str, str], log_dir: Path, connection: redis.Redis) -> Iterator[Process]:
    """``ls-panoptic worker --with-scheduler``, once it has registered with rq."""
    log = log_dir / "worker.log"
    with Stack(STOP_TIMEOUT) as stack:
        try:
            proc = start_worker(stack, env, log, (connection, QUEUE), cwd=REPO, append=True)
        except SupervisorError as exc:
            raise _failed(exc) from None
        yield proc


def annotation_event(
    action: str, result: list[dict[str, Any]], label_config: str
) -> Callable[..., bytes]:
    """A webhook body as Label Studio 1.23 posts it with "Send payload" on (serializers with
    ``fields='__all__'``: the annotation with its result, the task, the project with its counts);
    returns ``body(project=, task=, annotation=) -> bytes``."""
    project, task, annotation = (int(_MARKS[k]) for k in ("project", "task", "annotation"))
    stamp = "2026-11-26T09:00:00.123456Z"
    body = {
        "action": action,
        "annotation": {
            "id": annotation, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": stamp, "updated_at": stamp, "draft_created_at": None, "lead_time": 41.5,
            "prediction": {}, "result_count": len(result), "unique_id": "5d1e0d64-4e8a-4f1a",
            "import_id": None, "last_action": None, "bulk_created": False, "task": task,
            "project": project, "completed_by": 1, "updated_by": 1, "parent_prediction": None,
            "parent_annotation": None, "last_created_by": None,
        },
        "task": {
            "id": task, "data": {"image": f"/data/upload/{project}/0a1b2c3d-plant.png"}, "meta": {},
            "created_at": stamp, "updated_at": stamp, "is_labeled": True, "overlap": 1,
            "inner_id": 1, "total_annotations": 1, "cancelled_annotations": 0,
            "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": project, "updated_by": 1,
            "file_upload": 1, "comment_authors": [], "allow_skip": True,
            "precomputed_agreement": None,
        },
        "project": {
            "id": project, "title": "plants", "description": "", "label_config": label_config,
            "expert_instruction": "", "show_instruction": False, "show_skip_button": True,
            "enable_empty_annotation": True, "show_annotation_history": False, "organization": 1,
            "color": "#FFFFFF", "maximum_annotations": 1, "is_published": False,
            "model_version": "", "is_draft": False, "created_by": 1, "created_at": stamp,
            "min_annotations_to_start_training": 0, "task_number": 200,
            "finished_task_number": 120, "total_annotations_number": 130,
            "total_predictions_number": 0, "useful_annotation_number": 125,
            "ground_truth_number": 0, "skipped_annotations_number": 5,
            "num_tasks_with_annotations": 120, "sampling": "Sequential sampling",
            "control_weights": {}, "parsed_label_config": {},
            "evaluate_predictions_automatically": False,
        },
    }  # fmt: skip
    raw = json.dumps(body).encode()
    pieces = {name: raw.count(mark) for name, mark in _MARKS.items()}
    if pieces != {"project": 4, "task": 2, "annotation": 1}:  # 4: the image path holds it too
        raise BenchError(f"payload template markers occur {pieces} times")

    # the template cut at its markers: a body is one join (~0.03 ms), not three replace()
    # passes over 270 KB (~0.5 ms of the CPUs the server shares with the clients)
    names = {mark: name for name, mark in _MARKS.items()}
    found = list(re.finditer(b"|".join(map(re.escape, names)), raw))
    cuts: list[bytes] = [raw[a.end() : b.start()] for a, b in itertools.pairwise(found)]
    head, tail = raw[: found[0].start()], raw[found[-1].end() :]
    order = [names[m[0]] for m in found]

    def render(*, project: int, task: int, annotation: int) -> bytes:
        ids = {"project": str(project).encode(), "task": str(task).encode(),
               "annotation": str(annotation).encode()}  # fmt: skip
        parts = [head]
        for name, cut in zip(order, [*cuts, tail], strict=True):
            parts += (ids[name], cut)
        return b"".join(parts)

    return render


@dataclass(frozen=True)
class LoadResult:
    latencies: list[float]  # seconds, one per request
    seconds: float  # wall time from the first request sent to the last answer, all clients
    statuses: dict[int, int]
    enqueued: int  # sum of the webhook answers' "enqueued" (jobs the backend enqueued)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


class RawClient:
    """An HTTP/1.1 client on a bare socket: the request bytes are built once per call and sent
    whole, the answer is read by its Content-Length. It costs the shared CPUs a few tens of
    microseconds per request, where httpx costs about a millisecond with a 270 KB body: on a
    2-core machine the load generator would otherwise measure itself. Keep-alive, or, with
    ``fresh``, a new connection per request, closed as soon as the answer is read, as Label
    Studio posts its webhooks (``requests.post``: HTTP/1.1 keep-alive, and its session closes
    on return). The kernel then spreads them over the gunicorn workers, where a kept-alive
    connection stays with the worker that accepted it. Sending ``Connection: close`` instead, or
    closing only at the next request, would hold the worker that answered: gunicorn lingers on
    a connection it closes until the client closes its side (up to 2 s, in its event loop)."""

    def __init__(self, url: str, headers: dict[str, str], *, fresh: bool = False) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self._address, self._fresh = (host, int(port)), fresh
        self._sock: socket.socket | None = None if fresh else self._connect()
        lines = [f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        self._headers = ("\r\n".join(lines) + "\r\n").encode()
        self._buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=REQUEST_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._sock is None:  # fresh: a new connection per request
            self._sock, self._buffer = self._connect(), b""
        sock = self._sock
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._headers
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n".encode()
        sock.sendall(head + b"\r\n" + (body or b""))
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._recv(sock)
        header, _, rest = self._buffer.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = re.search(rb"(?im)^content-length:\s*(\d+)", header)
        if length is None:
            raise BenchError(f"{method} {path}: answer without Content-Length: {header!r}")
        while len(rest) < int(length[1]):
            rest += self._recv(sock)
        self._buffer = rest[int(length[1]) :]
        if self._fresh:  # as requests.post does on return: the server's close need not wait
            self.close()
        return status, rest[: int(length[1])]

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        data = sock.recv(65536)
        if not data:
            raise BenchError("the server closed the connection")
        return data

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _client(
    url: str,
    headers: dict[str, str],
    indices: range,
    make: MakeRequest,
    barrier: Any,
    interval: float | None = None,
) -> tuple[list[float], float, float, Counter[int], int]:
    """Send ``make(i)`` for ``i`` in ``indices``: back to back on one kept-alive connection
    (closed loop), or with ``interval`` one request every ``interval`` seconds on a fixed
    schedule, each on a new connection as Label Studio sends webhooks (open loop), each latency
    then counted from the request's scheduled time (connecting included), so that a slow
    answer delaying the next send is not hidden (no coordinated omission)."""
    latencies, statuses, enqueued = [], Counter[int](), 0
    client = RawClient(url, headers, fresh=interval is not None)
    try:
        for _ in range(10):  # connect and warm this connection's server thread
            client.request("GET", "/health")
        if barrier is not None:
            barrier.wait(timeout=60)
        start = time.monotonic()
        if interval is not None:  # the clients' schedules interleave
            start += interval * (indices.start % max(indices.step, 1)) / max(indices.step, 1)
        for k, i in enumerate(indices):
            method, path, body = make(i)
            if interval is None:
                sent = time.perf_counter()
            else:
                due = start + k * interval
                time.sleep(max(0.0, due - time.monotonic()))
                sent = time.perf_counter() - max(0.0, time.monotonic() - due)
            status, answer = client.request(method, path, body)
            latencies.append(time.perf_counter() - sent)
            statuses[status] += 1
            if status == 202:
                enqueued += int(json.loads(answer).get("enqueued", 0))
        end = time.monotonic()
    finally:
        client.close()
    return latencies, start, end, statuses, enqueued


def _client_process(
    url: str,
    headers: dict[str, str],
    indices: range,
    make: MakeRequest,
    barrier: Any,
    results: Any,
    interval: float | None,
) -> None:
    results.put(_client(url, headers, indices, make, barrier, interval))


def run_load(
    url: str,
    headers: dict[str, str],
    n: int,
    clients: int,
    make: MakeRequest,
    rate: float | None = None,
) -> LoadResult:
    """``n`` requests ``make(i)``, each client a keep-alive :class:`RawClient` in its own process
    (forked: no GIL shared between clients), started together; as fast as they are answered,
    or, given ``rate``, offered at ``rate`` requests per second in all (see :func:`_client`)."""
    interval = None if rate is None else clients / rate
    if clients == 1:
        parts = [_client(url, headers, range(n), make, None, interval)]
    else:
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(clients), ctx.Queue()
        procs = [
            ctx.Process(
                target=_client_process,
                args=(url, headers, range(i, n, clients), make, barrier, results, interval),
            )
            for i in range(clients)
        ]
        for proc in procs:
            proc.start()
        try:
            parts = [results.get(timeout=600) for _ in procs]
        finally:
            for proc in procs:
                proc.join(timeout=STOP_TIMEOUT)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
    statuses: Counter[int] = Counter()
    for part in parts:
        statuses.update(part[3])
    return LoadResult(
        [lat for part in parts for lat in part[0]],
        max(p[2] for p in parts) - min(p[1] for p in parts),
        dict(statuses),
        sum(p[4] for p in parts),
    )


# --- parts 2 and 3: a real Label Studio, the backend and a worker --------------------------

#: seconds between polls of the store's manifest while waiting for an entry
POLL_INTERVAL = 0.002
#: seconds an annotation may take to reach the store before the bench gives up
ENTRY_TIMEOUT = 60.0


def bench_live(
    sizes: Any, redis_url: str, client: redis.Redis, scene: Any, tmp: Path, report: Any
) -> None:
    """Parts 2 and 3; skipped, saying how to install it, when Label Studio is not installed."""
    from devstack.labelstudio import (
        LabelStudioStartError,
        label_studio_binary,
        resolve_venv,
        start_server,
        stop_server,
    )
    from tests.e2e.lsclient import LabelStudioClient

    venv = resolve_venv()
    binary = label_studio_binary(venv)
    if binary is None:
        print(
            f"\n2-3. skipped: Label Studio is not installed in {venv}. Install it with "
            "`.ci/install-label-studio` (label-studio==1.23.2 in its own virtualenv; set LS_VENV "
            "to use another one), then run this again."
        )
        report.target("webhook -> entry p95 <= 300 ms", "not run (no Label Studio)", None)
        report.target("burst <= 2 conversions", "not run (no Label Studio)", None)
        return
    print("\nstarting Label Studio (about 45 s: migrations of a fresh database) ...", flush=True)
    try:
        server = start_server(binary, tmp / "label-studio")
    except LabelStudioStartError as exc:
        raise BenchError(str(exc)) from None
    try:
        print(f"Label Studio healthy after {server.startup_seconds:.0f} s", flush=True)
        with LabelStudioClient(server.url, server.token) as ls:
            _live(sizes, redis_url, client, scene, tmp, report, server, ls)
    finally:
        stop_server(server)


def _live(
    sizes: Any, redis_url: str, client: redis.Redis, scene: Any, tmp: Path, report: Any,
    server: Any, ls: Any,
) -> None:  # fmt: skip
    project = int(ls.create_project("ls-panoptic service bench", scene.label_config)["id"])
    ls.import_files(project, {p.name: p.read_bytes() for p in sorted(scene.images.iterdir())})
    tasks = sorted(int(t["id"]) for t in ls.list_tasks(project))
    hook = secrets.token_hex(16)
    env = service_env(redis_url, hook, secrets.token_hex(16), (server.url, server.token))
    with serve_backend(env, tmp) as backend:
        connect = subprocess.run(
            [*ls_panoptic_command(), "connect", "--project", str(project), "--url", backend.url],
            env=env, cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        if connect.returncode != 0:
            raise BenchError(f"ls-panoptic connect failed: {connect.stdout}{connect.stderr}")
        with run_worker(env, tmp, client) as worker_proc:
            live = _Live(client, project, tasks, worker_proc)
            since = backend.log_size()
            live.annotate_and_update(ls, scene, sizes.updates)
            live.report_latency(server, scene, backend.server_ms(since), report)
            headers = {"Authorization": f"Bearer {hook}", "Content-Type": "application/json"}
            live.burst(backend.url, headers, scene, sizes, report)


class _Live:
    """One Label Studio project synced by the backend and a worker into the bench's Redis."""

    def __init__(
        self, client: redis.Redis, project: int, tasks: list[int], worker: Process
    ) -> None:
        from worker.jobqueue import make_queue
        from worker.keys import Keys
        from worker.store import Store

        self.client, self.project, self.tasks, self.worker = client, project, tasks, worker
        self.keys = Keys(PREFIX)
        self.store = Store(client, self.keys)
        self.queue = make_queue(client, QUEUE)
        self.annotations: dict[int, int] = {}  # task -> annotation id
        self.current: dict[int, int] = {}  # task -> scene result index it holds
        self.created: list[float] = []
        self.updated: list[float] = []
        self.api: list[float] = []

    def annotate_and_update(self, ls: Any, scene: Any, updates: int) -> None:
        for n, task in enumerate(self.tasks):
            made = ls.create_annotation(task, scene.result(n))
            self.created.append(self.wait_entry(task, made, time.perf_counter()))
            self.annotations[task], self.current[task] = int(made["id"]), n
        for u in range(updates):
            task = self.tasks[u % len(self.tasks)]
            self.current[task] += 1  # a different result than the one stored
            called = time.perf_counter()
            made = ls.update_annotation(self.annotations[task], scene.result(self.current[task]))
            returned = time.perf_counter()
            self.api.append(returned - called)
            self.updated.append(self.wait_entry(task, made, returned))

    def wait_entry(self, task: int, made: dict[str, Any], since: float) -> float:
        """Seconds from ``since`` until the store's entry of ``task`` is made from ``made``
        (the annotation as the API returned it): the instant its manifest version was seen."""
        from ls_panoptic.tasks import parse_timestamp

        annotation, target = int(made["id"]), parse_timestamp(made["updated_at"])
        manifest, last = self.keys.manifest(self.project), None
        while time.perf_counter() < since + ENTRY_TIMEOUT:
            version = self.client.hget(manifest, str(task))
            seen = time.perf_counter()
            if version is not None and version != last:
                last = version
                entry = self.store.get_entry(self.project, task)
                if (
                    entry is not None
                    and entry.meta.get("annotation_id") == annotation
                    and parse_timestamp(str(entry.meta.get("updated_at"))) >= target
                ):
                    return seen - since
            time.sleep(POLL_INTERVAL)
        try:
            self.worker.check()
        except SupervisorError as exc:
            raise _failed(exc) from None
        state = {s.task_id: s for s in self.store.states(self.project)}.get(task)
        raise BenchError(
            f"task {task}: annotation {annotation} not in the store after {ENTRY_TIMEOUT:.0f} s "
            f"(state {state}); worker log {self.worker.log}:\n{log_tail(self.worker.log)}"
        )

    def sync_jobs(self, exclude: frozenset[str] = frozenset()) -> list[Any]:
        """The finished sync jobs (rq's registry keeps them ``DEFAULT_RESULT_TTL``)."""
        from rq.job import Job
        from rq.registry import FinishedJobRegistry

        from worker.jobqueue import SERIALIZER

        ids = [
            j for j in FinishedJobRegistry(queue=self.queue).get_job_ids()
            if "-sync-" in j and j not in exclude
        ]  # fmt: skip
        return [j for j in Job.fetch_many(ids, connection=self.client, serializer=SERIALIZER) if j]

    def report_latency(self, server: Any, scene: Any, webhook_ms: list[float], report: Any) -> None:
        from ls_panoptic.convert import convert_task
        from ls_panoptic.labels import labelset_from_config
        from ls_panoptic.model import ConvertOptions
        from ls_panoptic.naming import image_key, image_url
        from worker.labelstudio import LabelStudio

        with LabelStudio(server.url, server.token) as sdk:
            pulls, configs = [], []
            for _ in range(10):
                started = time.perf_counter()
                _owner, task = sdk.get_task(self.tasks[0])
                pulls.append(time.perf_counter() - started)
                started = time.perf_counter()
                sdk.get_project(self.project)  # each sync job reads the label config too
                configs.append(time.perf_counter() - started)
        labels = labelset_from_config(scene.label_config)
        options = ConvertOptions()  # the worker runs with no LS_PANOPTIC_* conversion option
        key = image_key(image_url(task.data, labels.image_value), options.key, task.id)
        converts = []
        for _ in range(10):
            started = time.perf_counter()
            convert_task(task, key, labels, options)
            converts.append(time.perf_counter() - started)
        jobs = self.sync_jobs()
        waits = [(j.started_at - j.enqueued_at).total_seconds() for j in jobs]
        runs = [(j.ended_at - j.started_at).total_seconds() for j in jobs]
        floor = statistics.median(converts) * 1000
        rows = []
        for name, values in (
            ("ANNOTATION_CREATED: API return -> entry", self.created),
            ("ANNOTATION_UPDATED: API return -> entry", self.updated),
            ("  LS PATCH /api/annotations/<id>/ (webhook sent inline)", self.api),
            ("  backend /webhook server time (LS's calls)", [ms / 1000 for ms in webhook_ms]),
            ("  rq queue wait (enqueued -> started)", waits),
            ("  rq sync job (started -> ended: pull, convert, store)", runs),
            ("  LS get_task through the SDK (from the bench)", pulls),
            ("  LS get_project through the SDK (from the bench)", configs),
            ("  convert_task alone (floor)", converts),
        ):
            if not values:
                continue
            pct = percentiles(values)
            rows.append([name, len(values), pct["p50"], pct["p95"], 1000 * max(values),
                         f"{pct['p50'] / floor:.1f}x"])  # fmt: skip
        report.table(
            f"2. Webhook -> entry: Label Studio 1.23.2 + serve + 1 worker, {len(self.tasks)} tasks "
            f"{scene.size}, 30 regions (20 brush + 10 polygons)",
            ["", "n", "p50 ms", "p95 ms", "max ms", "p50 vs floor"],
            rows,
        )
        p95 = percentiles(self.updated)["p95"]
        report.target("webhook -> entry p95 <= 300 ms", f"{p95:.0f} ms", p95 <= 300)

    def burst(self, url: str, headers: dict[str, str], scene: Any, sizes: Any, report: Any) -> None:
        before = frozenset(j.id for j in self.sync_jobs())
        task = self.tasks[0]
        event = annotation_event(
            "ANNOTATION_UPDATED", scene.result(self.current[task]), scene.label_config
        )
        body = event(project=self.project, task=task, annotation=self.annotations[task])
        sent = run_load(
            url, headers, sizes.burst, sizes.clients, lambda i: ("POST", "/webhook", body)
        )
        if any(code >= 300 for code in sent.statuses):
            raise BenchError(f"burst: answers {sent.statuses}")
        self.wait_idle(task)
        jobs = self.sync_jobs(before)
        outcomes = Counter(str(j.return_value()) for j in jobs)
        runs = [(j.ended_at - j.started_at).total_seconds() for j in jobs]
        report.table(
            f"3. Burst: {sizes.burst} ANNOTATION_UPDATED for one task, {sizes.clients} clients, "
            "worker running",
            ["events", "burst s", "events/s", "jobs enqueued", "conversions (sync jobs run)",
             "outcomes", "job p50 ms"],
            [[len(sent.latencies), sent.seconds, sent.per_second, sent.enqueued, len(jobs),
              " ".join(f"{k}={v}" for k, v in sorted(outcomes.items())),
              1000 * statistics.median(runs) if runs else "-"]],
        )  # fmt: skip
        print(
            "  a sync job waits until the task has been quiet for LS_PANOPTIC_DEBOUNCE_MS "
            "(at most LS_PANOPTIC_DEBOUNCE_MAX_S)\n  before it clears the pending flag, so a "
            "burst with short gaps costs one conversion (two if it outlasts the cap)"
        )
        report.target(
            "burst <= 2 conversions", f"{len(jobs)} (burst {sent.seconds:.1f} s)", len(jobs) <= 2
        )

    def wait_idle(self, task: int, timeout: float = 120.0) -> None:
        """Until the queue, the started registry and the task's pending flag stay empty."""
        from rq.registry import StartedJobRegistry

        started = StartedJobRegistry(queue=self.queue)
        pending = self.keys.pending(self.project, task)
        quiet, deadline = 0, time.monotonic() + timeout
        while quiet < 5:
            idle = self.queue.count == 0 and started.count == 0 and not self.client.exists(pending)
            quiet = quiet + 1 if idle else 0
            if time.monotonic() > deadline:
                raise BenchError(f"the queue did not drain in {timeout:.0f} s; {self.worker.log}")
            time.sleep(0.1)

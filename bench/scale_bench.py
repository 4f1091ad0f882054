"""A big project, synced by one worker (issue 14, item 2), in one run on this machine.

A real Label Studio 1.23.2 (devstack/labelstudio.py, ``.venv-labelstudio``) gets a project of
``--tasks`` imported tasks (bulk import API, 500 per request), each with one annotation of
1920x1080 regions: brush (anti-aliased RLE), polygon, rotated rectangle, rotated ellipse and a
bitmask PNG (``--no-bitmask`` leaves it out). Then ``ls-panoptic serve`` and one
``ls-panoptic worker`` (no webhook connected: every change is a lost webhook, found by resync),
and it measures:

1. the first full sync (``POST /projects/<id>/resync`` until every task has its entry);
2. a resync with nothing changed, and one after 1% of the annotations were edited in Label
   Studio (their entries checked);
3. Redis memory of the project's keys (``MEMORY USAGE`` of each), per entry and in total;
4. ``GET /projects/<id>/entries?limit=100`` (the first page), the unpaged list, ``/metrics``;
5. ``GET /projects/<id>/snapshot.pkl`` streamed by the client into files with ``fdatasync``
   (of ``--roll-gib`` GiB each, synced and deleted by a thread while the next is written, so
   an 83 GB snapshot fits a small disk), the backend's peak memory meanwhile (RSS of its
   gunicorn workers, sampled), against ``dd if=/dev/zero of=FILE bs=1M count=N conv=fdatasync``
   in the same folder, N the MiB of one file; and the same snapshot received and dropped.

    .venv/bin/python bench/scale_bench.py [--tasks 10000] [--redis-url URL] [--no-bitmask]

Uses its own Redis database (default ``redis://127.0.0.1:6379/9``), flushed before and after;
every process it starts is stopped by PID. Prints the figures and the issue's goals (met or
not); no pass/fail exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _service_parts import (  # noqa: E402  # bench/ is this script's own folder
    PREFIX,
    QUEUE,
    BenchError,
    bench_redis,
    run_worker,
    serve_backend,
    service_env,
)

from devstack import synthetic  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
HEIGHT, WIDTH = 1080, 1920
IMPORT_BATCH = 500
VARIANTS = 16  # distinct annotations, cycled over the tasks
CHANGED = 0.01  # share of annotations edited before the last resync
GOALS = {"first_sync_tasks_s": 100, "unchanged_resync_s": 30, "entry_kb": 40,
         "snapshot_vs_dd": 0.70, "first_page_ms": 100}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks to import (10000)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--no-bitmask", action="store_true", help="no bitmask region")
    parser.add_argument("--roll-gib", type=float, default=4.0, help="snapshot file roll size")
    parser.add_argument("--dir", type=Path, default=None, help="working folder (a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-bench-", dir=args.dir) as folder:
        try:
            run(args, Path(folder))
        except BenchError as exc:
            sys.exit(f"scale_bench: {exc}")


def run(args: argparse.Namespace, tmp: Path) -> None:
    from devstack.labelstudio import label_studio_binary, resolve_venv, start_server, stop_server

    binary = label_studio_binary(resolve_venv())
    if binary is None:
        raise BenchError("Label Studio is not installed: run .ci/install-label-studio first")
    print(f"scale bench: {args.tasks} tasks of {WIDTH}x{HEIGHT}, bitmask {not args.no_bitmask}")
    print("starting Label Studio ...", flush=True)
    server = start_server(binary, tmp / "label-studio")
    try:
        print(f"Label Studio healthy after {server.startup_seconds:.0f} s", flush=True)
        with bench_redis(args.redis_url) as client:
            _bench(args, tmp, server, client)
    finally:
        stop_server(server)


def _variants(bitmask: bool) -> list[list[dict[str, Any]]]:
    """Annotation results: brush + polygon + rectangle + ellipse (+ bitmask), 1080p."""
    rng = np.random.default_rng(14)
    found = []
    for v in range(VARIANTS):
        result = synthetic._random_regions(rng, HEIGHT, WIDTH, 1, 1, f"v{v}")
        fixed = synthetic._fixed_regions(rng, HEIGHT, WIDTH)  # bitmask, rectangle, ellipse
        found.append(result + (fixed if bitmask else fixed[1:]))
    return found


def _import(http: httpx.Client, tasks: int, bitmask: bool) -> tuple[int, float]:
    """A new project with ``tasks`` annotated tasks; its id and the import's seconds."""
    made = http.post("/api/projects", json={"title": "scale bench",
                                           "label_config": synthetic.label_config()})  # fmt: skip
    made.raise_for_status()
    project = int(made.json()["id"])
    variants = _variants(bitmask)
    started = time.perf_counter()
    for first in range(0, tasks, IMPORT_BATCH):
        batch = [
            {"data": {"image": f"/data/upload/{project}/{n:08x}-plant_{n:05d}.jpg"},
             "annotations": [{"result": variants[n % VARIANTS], "completed_by": 1}]}
            for n in range(first, min(tasks, first + IMPORT_BATCH))
        ]  # fmt: skip
        answer = http.post(f"/api/projects/{project}/import", json=batch, timeout=600)
        if answer.status_code != 201:
            raise BenchError(f"import failed: {answer.status_code} {answer.text[:300]}")
        print(f"  imported {first + len(batch)}", end="\r", flush=True)
    return project, time.perf_counter() - started


class _Service:
    """The backend's API and the worker's queue, for one project."""

    def __init__(self, client: Any, url: str, token: str, project: int) -> None:
        from worker.jobqueue import SERIALIZER, make_queue
        from worker.keys import Keys
        from worker.store import Store

        self.client, self.project, self.serializer = client, project, SERIALIZER
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=3600)  # fmt: skip
        self.keys = Keys(PREFIX)
        self.store = Store(client, self.keys)
        self.queue = make_queue(client, QUEUE)

    def resync(self) -> tuple[float, dict[str, Any]]:
        """Seconds from the request to the resync and every sync job it enqueued being done;
        the resync's summary."""
        from rq.job import Job, JobStatus

        started = time.perf_counter()
        answer = self.http.post(f"/projects/{self.project}/resync")
        answer.raise_for_status()
        job = Job.fetch(answer.json()["job_id"], connection=self.client,
                        serializer=self.serializer)  # fmt: skip
        while (status := job.get_status()) not in (JobStatus.FINISHED, JobStatus.FAILED):
            time.sleep(0.05)
        if status == JobStatus.FAILED:
            raise BenchError(f"the resync failed: {job.latest_result()}")
        while self.queue.count or self.queue.started_job_registry.count:
            time.sleep(0.05)
        return time.perf_counter() - started, dict(job.return_value() or {})

    def latency_ms(self, path: str, rounds: int = 20) -> float:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            self.http.get(path).raise_for_status()
            times.append(time.perf_counter() - started)
        return 1000 * statistics.median(times)


def _bench(args: argparse.Namespace, tmp: Path, server: Any, client: Any) -> None:
    results: dict[str, Any] = {"tasks": args.tasks, "bitmask": not args.no_bitmask}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=600) as ls:
        project, seconds = _import(ls, args.tasks, not args.no_bitmask)
        print(f"imported {args.tasks} tasks in {seconds:.1f} s" + " " * 20, flush=True)
        api_token = secrets.token_hex(16)
        env = service_env(args.redis_url, secrets.token_hex(16), api_token,
                          (server.url, server.token))  # fmt: skip
        with serve_backend(env, tmp) as backend, run_worker(env, tmp, client):
            svc = _Service(client, backend.url, api_token, project)
            _syncs(svc, ls, args.tasks, results)
            _memory(svc, results)
            _api(svc, results)
            _snapshot(svc, backend.pid, tmp, args.roll_gib, results)
    _report(results)
    print("\nJSON: " + json.dumps(results, sort_keys=True))


def _syncs(svc: _Service, ls: httpx.Client, tasks: int, results: dict[str, Any]) -> None:
    load = os.getloadavg()[0]
    seconds, summary = svc.resync()
    load = max(load, os.getloadavg()[0])
    counts = svc.store.status_counts(svc.project)
    if counts.get("ok") != tasks:
        raise BenchError(f"after the first sync: {counts}, expected {tasks} ok")
    results.update(first_sync_s=seconds, first_sync_tasks_s=tasks / seconds,
                   first_sync_converted=summary.get("converted"),
                   first_sync_pulled=summary.get("enqueued"), first_sync_load=load)  # fmt: skip
    print(f"first sync: {seconds:.1f} s, {tasks / seconds:.1f} tasks/s {summary_line(summary)}; "
          f"load average {load:.1f} on {os.cpu_count()} CPUs (other work slows it)")  # fmt: skip

    seconds, summary = svc.resync()
    results.update(unchanged_resync_s=seconds, unchanged_converted=summary.get("converted"))
    print(f"unchanged resync: {seconds:.1f} s {summary_line(summary)}", flush=True)

    states = svc.store.states(svc.project)
    step = max(1, round(1 / CHANGED))
    edited = {s.task_id: s.annotation_id for s in states[::step]}
    stamps = {t: _edited_at(svc, t) for t in edited}
    for annotation_id in edited.values():
        found = ls.get(f"/api/annotations/{annotation_id}/").json()
        result = [r for r in found["result"] if r.get("type") != "polygonlabels"]  # one less
        ls.patch(f"/api/annotations/{annotation_id}/", json={"result": result}).raise_for_status()
    seconds, summary = svc.resync()
    changed = sum(_edited_at(svc, t) != stamps[t] for t in edited)
    results.update(changed_resync_s=seconds, changed_tasks=len(edited), changed_verified=changed,
                   changed_converted=summary.get("converted"))  # fmt: skip
    print(f"resync after {len(edited)} edits: {seconds:.1f} s {summary_line(summary)}; "
          f"{changed} entries show the edit", flush=True)  # fmt: skip


def _edited_at(svc: _Service, task_id: int) -> Any:
    """The ``updated_at`` of the annotation the task's entry was made from."""
    entry = svc.store.get_entry(svc.project, task_id)
    return None if entry is None else entry.meta.get("updated_at")


def summary_line(summary: dict[str, Any]) -> str:
    keys = ("to_sync", "converted", "stale", "enqueued", "coalesced")
    return "(" + ", ".join(f"{k} {summary.get(k)}" for k in keys) + ")"


def _memory(svc: _Service, results: dict[str, Any]) -> None:
    """``MEMORY USAGE`` of every key of the project (and the store's shared ones)."""
    total = blobs = blob_count = 0
    batch: list[bytes] = []

    def measure(keys: list[bytes]) -> None:
        nonlocal total, blobs, blob_count
        with svc.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        for key, size in zip(keys, sizes, strict=True):
            total += size or 0
            if b":blob:" in key:
                blobs += size or 0
                blob_count += 1

    for key in svc.client.scan_iter(match=f"{PREFIX}:*".encode(), count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            measure(batch)
            batch = []
    measure(batch)
    entries = svc.store.entry_count(svc.project)
    results.update(redis_total_mb=total / 1e6, redis_per_entry_kb=total / entries / 1e3,
                   blob_kb=blobs / max(1, blob_count) / 1e3, entries=entries)  # fmt: skip
    print(f"Redis: {total / 1e6:.1f} MB for {entries} entries, {total / entries / 1e3:.1f} KB "
          f"per entry (a blob {blobs / max(1, blob_count) / 1e3:.1f} KB)", flush=True)  # fmt: skip


def _api(svc: _Service, results: dict[str, Any]) -> None:
    base = f"/projects/{svc.project}"
    page = svc.latency_ms(f"{base}/entries?limit=100")
    whole = svc.latency_ms(f"{base}/entries", rounds=3)
    metrics = svc.latency_ms("/metrics")
    results.update(first_page_ms=page, unpaged_entries_ms=whole, metrics_ms=metrics)
    print(f"/entries?limit=100 {page:.1f} ms (unpaged {whole:.0f} ms), /metrics {metrics:.1f} ms",
          flush=True)  # fmt: skip


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = Path(entry, "stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == str(pid):
                found.append(int(entry.name))
    return found


def _snapshot(
    svc: _Service, backend_pid: int, tmp: Path, roll_gib: float, results: dict[str, Any]
) -> None:
    workers = _children(backend_pid) or [backend_pid]
    before = {pid: _rss_kb(pid) for pid in workers}
    peak = dict(before)
    sampling = True

    def sample() -> None:
        while sampling:
            for pid in workers:
                peak[pid] = max(peak[pid], _rss_kb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    roll = int(roll_gib * 2**30)
    target = tmp / "snapshot.pkl"
    url = f"/projects/{svc.project}/snapshot.pkl"
    started = time.perf_counter()
    with svc.http.stream("GET", url) as answer:
        answer.raise_for_status()
        written = _receive(answer, tmp, roll)
    seconds = time.perf_counter() - started
    sampling = False
    sampler.join()
    announced = int(answer.headers["Content-Length"])
    if written != announced:
        raise BenchError(f"snapshot: {written} bytes received, {announced} announced")
    if written < roll:  # small enough to have been kept whole: it must load
        import pickle

        with (tmp / "roll-0.pkl").open("rb") as snapshot:
            loaded = pickle.load(snapshot)
        if len(loaded) != results["entries"]:
            raise BenchError(f"snapshot holds {len(loaded)} entries, expected {results['entries']}")
        (tmp / "roll-0.pkl").unlink()
    peak_mb = max(peak[pid] - before[pid] for pid in workers) / 1e3
    discard_started, discarded = time.perf_counter(), 0  # the same, dropped: no disk
    with svc.http.stream("GET", url) as answer:
        for chunk in answer.iter_raw(1 << 20):
            discarded += len(chunk)
    results["snapshot_discarded_mb_s"] = discarded / (time.perf_counter() - discard_started) / 1e6
    dd_mib = max(1, min(written, roll) // 2**20)
    dd_seconds = []
    for _ in range(2):
        dd_started = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={dd_mib}",
                        "conv=fdatasync"], check=True, capture_output=True)  # fmt: skip
        dd_seconds.append(time.perf_counter() - dd_started)
        target.unlink()
    dd_rate = dd_mib * 2**20 / statistics.median(dd_seconds)
    rate = written / seconds
    results.update(snapshot_s=seconds, snapshot_gb=written / 1e9, snapshot_mb_s=rate / 1e6,
                   snapshot_peak_mb=peak_mb, dd_mb_s=dd_rate / 1e6, dd_mib=dd_mib,
                   snapshot_vs_dd=rate / dd_rate)  # fmt: skip
    print(f"snapshot: {written / 1e9:.2f} GB in {seconds:.1f} s = {rate / 1e6:.0f} MB/s; dd "
          f"{dd_mib} MiB conv=fdatasync {dd_rate / 1e6:.0f} MB/s; ratio {rate / dd_rate:.2f}; "
          f"backend peak +{peak_mb:.0f} MB RSS; received and discarded (no disk): "
          f"{results['snapshot_discarded_mb_s']:.0f} MB/s", flush=True)  # fmt: skip


def _receive(answer: httpx.Response, tmp: Path, roll: int) -> int:
    """Write the body to disk as a client saving it would, ``fdatasync`` included, in files of
    ``roll`` bytes (``roll-0.pkl``, ``roll-1.pkl``, ...): a full one is synced and deleted by a
    thread while the next is written (as the kernel writes back behind ``dd``), so the disk
    holds two at most. Returns the bytes received."""
    written, number = 0, 0
    syncing: threading.Thread | None = None
    file = (tmp / "roll-0.pkl").open("wb")

    def settle(done: Any, path: Path, keep: bool = False) -> None:
        done.flush()
        os.fdatasync(done.fileno())
        done.close()
        if not keep:
            path.unlink()

    for chunk in answer.iter_raw(1 << 20):
        file.write(chunk)
        written += len(chunk)
        if written >= (number + 1) * roll:
            if syncing is not None:
                syncing.join()
            syncing = threading.Thread(target=settle, args=(file, tmp / f"roll-{number}.pkl"))
            syncing.start()
            number += 1
            file = (tmp / f"roll-{number}.pkl").open("wb")
    if syncing is not None:
        syncing.join()
    settle(file, tmp / f"roll-{number}.pkl", keep=number == 0)  # whole: the caller loads it
    return written


def _report(results: dict[str, Any]) -> None:
    rows = [
        ("first sync", f"{results['first_sync_tasks_s']:.1f} tasks/s",
         results["first_sync_tasks_s"] >= GOALS["first_sync_tasks_s"], ">= 100 tasks/s"),
        ("unchanged resync", f"{results['unchanged_resync_s']:.1f} s",
         results["unchanged_resync_s"] < GOALS["unchanged_resync_s"], "< 30 s"),
        ("Redis per entry", f"{results['redis_per_entry_kb']:.1f} KB",
         results["redis_per_entry_kb"] < GOALS["entry_kb"], "< 40 KB"),
        ("snapshot / dd", f"{results['snapshot_vs_dd']:.2f}",
         results["snapshot_vs_dd"] >= GOALS["snapshot_vs_dd"], ">= 0.70"),
        ("/entries first page", f"{results['first_page_ms']:.1f} ms",
         results["first_page_ms"] < GOALS["first_page_ms"], "< 100 ms"),
    ]  # fmt: skip
    print("\ngoal                  measured        goal       met")
    for name, value, met, goal in rows:
        print(f"{name:<21} {value:<15} {goal:<10} {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()

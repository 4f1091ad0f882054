"""The live sync service against its floors, measured in one run on loopback.

1. Webhook acknowledgement: ``ls-panoptic serve`` (gunicorn, as shipped) answering
   ANNOTATION_UPDATED POSTs shaped like Label Studio's from keep-alive raw-socket clients, one and
   several (each its own process), against the same clients on ``GET /health``.
2. Webhook -> entry: a real Label Studio 1.23.2 (devstack/labelstudio.py, ``.venv-labelstudio``)
   connected with ``ls-panoptic connect`` to the backend, an ``ls-panoptic worker``; time from
   the return of Label Studio's annotation API call to the store holding that annotation, on
   1920x1080 images with 30 regions (20 brush + 10 polygons, devstack/synthetic). Floor: the pure
   ``convert_task`` of the same task.
3. Burst coalescing: ANNOTATION_UPDATED events for one task sent as fast as the clients can
   while the worker runs; the sync jobs executed (rq's finished-job registry) are conversions.
4. Snapshot: ``Store.write_snapshot`` of 1080p entries (put through the real ``Store``) to a
   file with fdatasync, in a fresh process (peak memory: VmHWM minus VmRSS before the write),
   against ``dd if=/dev/zero ... conv=fdatasync`` of the same size.

    .venv/bin/python bench/service_bench.py [--quick] [--no-label-studio] [--redis-url URL]

Runs part 4 first, then 1, then 2-3 (Label Studio last: it loads the machine). Uses its own
Redis database (default ``redis://127.0.0.1:6379/8``), flushed before and after; every process
it starts is stopped by PID. Prints tables and the issue's targets (met or not);
no pass/fail exit code. Parts 2-3 are skipped, saying how to install, without Label Studio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _service_parts import (  # noqa: E402  # bench/ is this script's own folder
    PREFIX,
    BenchError,
    LoadResult,
    annotation_event,
    bench_live,
    bench_redis,
    percentiles,
    run_load,
    serve_backend,
    service_env,
)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
#: events per second the acknowledgement must sustain (issue 3): offered load of the p99 target
TARGET_RATE = 500
#: client processes offering TARGET_RATE
OFFERED_CLIENTS = 2
SNAPSHOT_PROJECT = 1
NO_DISK = "-"  # --run-snapshot target: write to a counting sink, not a file
HEIGHT, WIDTH, BRUSH, POLY = 1080, 1920, 20, 10


@dataclass(frozen=True)
class Sizes:
    requests: int  # per row of part 1
    clients: int  # concurrent clients (parts 1 and 3)
    updates: int  # annotation updates timed in part 2
    burst: int  # events in part 3
    entries: int  # snapshot entries in part 4
    rounds: int  # snapshot/dd repetitions (medians)
    images: int  # synthetic 1080p images (distinct annotations)


FULL = Sizes(requests=2000, clients=4, updates=20, burst=1000, entries=200, rounds=5, images=4)
QUICK = Sizes(requests=200, clients=4, updates=5, burst=200, entries=20, rounds=1, images=2)


@dataclass(frozen=True)
class Scene:
    """Synthetic 1080p images and their 30-region annotations, Label Studio JSON export style."""

    tasks: list[dict[str, Any]]
    images: Path
    label_config: str
    size: str = f"{WIDTH}x{HEIGHT}"

    def result(self, n: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.tasks[n % len(self.tasks)]["annotations"][1]["result"]
        return result


class Report:
    """Tables as they are measured, and the targets at the end."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, str, bool | None]] = []

    @staticmethod
    def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
        cells = [header] + [[_cell(v) for v in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
        print(f"\n{title}")
        for n, row in enumerate(cells):
            rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            print("  " + "  ".join([row[0].ljust(widths[0]), *rest]))
            if n == 0:
                print("  " + "  ".join("-" * w for w in widths))
        sys.stdout.flush()

    def target(self, name: str, measured: str, met: bool | None) -> None:
        self.targets.append((name, measured, met))

    def summary(self) -> None:
        rows = [
            [n, m, "n/a" if ok is None else ("met" if ok else "MISSED")]
            for n, m, ok in self.targets
        ]
        self.table("Targets (issue 3)", ["target", "measured", ""], rows)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def make_scene(root: Path, images: int) -> Scene:
    from devstack.synthetic import label_config, make_project

    project = make_project(
        root, n_images=images, height=HEIGHT, width=WIDTH, n_brush=BRUSH, n_poly=POLY,
        every_kind=False,
    )  # fmt: skip
    return Scene(json.loads(project.export.read_text()), project.images, label_config())


# --- part 1 ------------------------------------------------------------------------------


def bench_ack(
    sizes: Sizes,
    redis_url: str,
    client: Any,
    scene: Scene,
    tmp: Path,
    report: Report,
    serve_options: list[str],
) -> None:
    hook = secrets.token_hex(16)
    env = service_env(redis_url, hook, secrets.token_hex(16))
    headers = {"Authorization": f"Bearer {hook}", "Content-Type": "application/json"}
    polygon = [item for item in scene.result(0) if item["type"] == "polygonlabels"][:1]
    small = annotation_event("ANNOTATION_UPDATED", polygon, scene.label_config)
    full = annotation_event("ANNOTATION_UPDATED", scene.result(0), scene.label_config)
    kb = len(full(project=1, task=1, annotation=1)) / 1024
    kb_small = len(small(project=1, task=1, annotation=1)) / 1024
    cases: list[tuple[str, Any]] = [
        ("GET /health (floor: Redis PING)", lambda i: ("GET", "/health", None)),
        (f"webhook {kb_small:.0f} KB, 1 polygon, new task each",
         lambda i: ("POST", "/webhook", small(project=1, task=i + 1, annotation=i + 1))),
        (f"webhook {kb:.0f} KB, 30 regions 1080p, new task each",
         lambda i: ("POST", "/webhook", full(project=1, task=i + 1, annotation=i + 1))),
        (f"webhook {kb:.0f} KB, 30 regions, one task (coalesced)",
         lambda i: ("POST", "/webhook", full(project=1, task=1, annotation=1))),
    ]  # fmt: skip
    with serve_backend(env, tmp, serve_options) as backend:
        run_load(backend.url, headers, sizes.requests // 4, sizes.clients, cases[2][1])  # warm-up
        rows: list[list[Any]] = []
        floors: dict[str, tuple[float, float]] = {}
        results: dict[tuple[int, str], LoadResult] = {}
        loads = {  # closed loops: as fast as answered; open: offered at the target rate by two
            # client processes (four sleeping ones on these two shared CPUs measured their own
            # wake-ups), a new connection per request as Label Studio sends webhooks
            "1 client": (1, None),
            f"{sizes.clients} clients": (sizes.clients, None),
            f"{TARGET_RATE}/s offered": (OFFERED_CLIENTS, TARGET_RATE),
        }
        for n, (name, make) in enumerate(cases):
            for load, (clients, rate) in loads.items():
                client.flushdb()
                since, cpu = backend.log_size(), backend.cpu_seconds()
                result = run_load(backend.url, headers, sizes.requests, clients, make, rate)
                cpu_ms = 1000 * (backend.cpu_seconds() - cpu) / sizes.requests
                if any(code >= 300 for code in result.statuses):
                    raise BenchError(f"{name}: answers {result.statuses}; see {backend.log}")
                pct = percentiles(result.latencies)
                server = backend.server_ms(since, "/health" if n == 0 else "/webhook")
                floor = floors.setdefault(load, (pct["p50"], result.per_second))
                results[n, load] = result
                rows.append([
                    name, load, pct["p50"], pct["p95"], pct["p99"], result.per_second,
                    f"{pct['p50'] / floor[0]:.1f}x", f"{100 * result.per_second / floor[1]:.0f}%",
                    statistics.median(server) if server else "-", max(server) if server else "-",
                    cpu_ms, (os.cpu_count() or 1) * 1000 / cpu_ms,
                ])  # fmt: skip
    Report.table(
        "1. Webhook acknowledgement: ls-panoptic serve "
        f"{' '.join(serve_options) or '(defaults: CPUs + 1 workers x 1 thread)'}, "
        f"{sizes.requests} requests per row, keep-alive raw-socket clients",
        ["", "load", "p50 ms", "p95 ms", "p99 ms", "req/s", "p50 vs floor", "req/s vs floor",
         "server p50 ms", "server max ms", "server CPU ms/req", "CPU-bound req/s"],
        rows,
    )  # fmt: skip
    print(
        "  server ms: the app's own before_request..after_request time, from its log; server CPU:\n"
        "  user+system time of the gunicorn processes per request (clients, Redis excluded);\n"
        "  CPU-bound req/s: what all CPUs would serve at that cost (clients share them here);\n"
        f"  load: closed loops send as fast as answered (their p99 at saturation is queueing);\n"
        f"  '{TARGET_RATE}/s offered': {OFFERED_CLIENTS} clients on a fixed schedule, latency from "
        "each request's scheduled time"
    )
    one, many, offered = loads
    for n, payload in ((2, f"{kb:.0f} KB payload"), (1, f"{kb_small:.0f} KB payload")):
        for load in (one, offered):
            p99 = percentiles(results[n, load].latencies)["p99"]
            report.target(f"ack p99 <= 10 ms ({payload}, {load})", f"{p99:.1f} ms", p99 <= 10)
        best = max(results[n, one].per_second, results[n, many].per_second)
        report.target(
            f"ack >= {TARGET_RATE} events/s ({payload}, closed loops)",
            f"{best:.0f} /s",
            best >= TARGET_RATE,
        )


# --- part 4 ------------------------------------------------------------------------------


def _fill_store(sizes: Sizes, client: Any, scene: Scene) -> list[float]:
    """``sizes.entries`` distinct 1080p entries (converted synthetic masks, shifted) put through
    ``Store.put_entry``; returns the put times in seconds."""
    import numpy as np

    from ls_panoptic.convert import convert_task
    from ls_panoptic.labels import labelset_from_config
    from ls_panoptic.model import ConvertOptions, Entry
    from ls_panoptic.tasks import task_from_dict
    from worker.keys import Keys
    from worker.store import Store

    labels = labelset_from_config(scene.label_config)
    bases = [
        entry
        for t in scene.tasks
        if (entry := convert_task(task_from_dict(t), "k", labels, ConvertOptions())) is not None
    ]
    store = Store(client, Keys(PREFIX))
    stamp = dt.datetime.now(dt.timezone.utc).isoformat()
    times = []
    for i in range(sizes.entries):
        base = bases[i % len(bases)]
        mask = np.roll(base.panoptic_mask, 16 * i, axis=1)
        entry = Entry(f"plant_{i:05d}.png", mask, base.inst2class, {**base.meta, "task_id": i + 1})
        started = time.perf_counter()
        store.put_entry(SNAPSHOT_PROJECT, i + 1, entry, stamp)
        times.append(time.perf_counter() - started)
    return times


def _snapshot_child(redis_url: str, out: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--run-snapshot", out, "--redis-url", redis_url],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"the snapshot process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _dd(path: Path, size: int) -> dict[str, float]:
    mib = math.ceil(size / 2**20)
    started = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"],
        check=True, capture_output=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    path.unlink()
    return {"seconds": seconds, "bytes": mib * 2**20}


def _settle() -> None:
    """Before each timed disk write: no dirty pages left over from the previous one."""
    os.sync()
    time.sleep(1.0)


def _mb_s(run: dict[str, float]) -> float:
    return run["bytes"] / run["seconds"] / 1e6


def bench_snapshot(
    sizes: Sizes, redis_url: str, client: Any, scene: Scene, tmp: Path, report: Report
) -> None:
    """Each round: the snapshot to a counting sink (no disk), then the snapshot to a file and
    dd of the same size, in alternating order (this VM's disk speed swings 5x between runs)."""
    puts = _fill_store(sizes, client, scene)
    out = tmp / "snapshot.pkl"
    nulls, snaps, dds = [], [], []
    for n in range(sizes.rounds):
        nulls.append(_snapshot_child(redis_url, NO_DISK))
        for side in ("snapshot", "dd") if n % 2 == 0 else ("dd", "snapshot"):
            _settle()
            if side == "dd":
                dds.append(_dd(tmp / "dd.bin", int(nulls[-1]["bytes"])))
            else:
                snaps.append(_snapshot_child(redis_url, str(out)))
                out.unlink()
    ratios = [_mb_s(snap) / _mb_s(dd) for snap, dd in zip(snaps, dds, strict=True)]
    ratio, extra = statistics.median(ratios), max(s["hwm_mb"] - s["rss_mb"] for s in snaps)
    rows: list[list[Any]] = []
    for name, runs in (("Store.write_snapshot -> counting sink (no disk)", nulls),
                       ("Store.write_snapshot -> file + fdatasync", snaps),
                       ("dd if=/dev/zero bs=1M conv=fdatasync (floor)", dds)):  # fmt: skip
        rates = [_mb_s(r) for r in runs]
        memory = [max(r["hwm_mb"] - r["rss_mb"] for r in runs)] if "rss_mb" in runs[0] else ["-"]
        rows.append([name, statistics.median(rates), f"{min(rates):.0f}-{max(rates):.0f}",
                     statistics.median(r["seconds"] for r in runs), *memory])  # fmt: skip
    Report.table(
        f"4. Snapshot of {sizes.entries} entries {WIDTH}x{HEIGHT} ({nulls[0]['bytes'] / 1e6:.0f} "
        f"MB), a fresh process each, {sizes.rounds} rounds",
        ["", "MB/s p50", "MB/s range", "seconds p50", "peak extra MB"],
        rows,
    )
    put_ms = 1000 * statistics.median(puts)
    print(
        f"  snapshot/dd speed per round: {' '.join(f'{100 * r:.0f}%' for r in ratios)}; "
        f"RSS before the write {snaps[0]['rss_mb']:.0f} MB (imports, Redis client)\n"
        f"  put_entry (zstd + MULTI/EXEC) per 1080p entry, while filling: p50 {put_ms:.1f} ms"
    )
    report.target(">= 70% of dd speed (snapshot file)", f"{100 * ratio:.0f}%", ratio >= 0.7)
    report.target("<= 150 MB extra peak memory (snapshot)", f"{extra:.0f} MB", extra <= 150)


def run_snapshot_child(redis_url: str, out: str) -> None:
    """In a fresh process: write the snapshot, print seconds, bytes, RSS and peak (VmHWM)."""
    import redis

    from worker.keys import Keys
    from worker.store import Store

    client = redis.Redis.from_url(redis_url)
    client.ping()
    store = Store(client, Keys(PREFIX))
    rss = _status_mb("VmRSS")
    started = time.perf_counter()
    if out == NO_DISK:
        sink = _CountingSink()
        info = store.write_snapshot(SNAPSHOT_PROJECT, sink)  # type: ignore[arg-type]
        size = sink.size
    else:
        with open(out, "wb") as file:
            info = store.write_snapshot(SNAPSHOT_PROJECT, file)
            file.flush()
            os.fdatasync(file.fileno())
            size = file.tell()
    seconds = time.perf_counter() - started
    hwm = _status_mb("VmHWM")
    result = {
        "seconds": seconds,
        "bytes": size,
        "entries": info.count,
        "rss_mb": rss,
        "hwm_mb": hwm,
    }
    print(json.dumps(result))


class _CountingSink:
    """A binary file that keeps nothing: the snapshot without the disk."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` figure in MB (VmHWM, unlike ru_maxrss, is not inherited)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"/proc/self/status has no {field}")


# --- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (about a minute without LS)"
    )
    parser.add_argument("--no-label-studio", action="store_true", help="skip parts 2 and 3")
    parser.add_argument(
        "--only",
        choices=["ack", "live", "snapshot"],
        action="append",
        help="run only this part (repeatable): ack = 1, live = 2 and 3, snapshot = 4",
    )
    parser.add_argument(
        "--redis-url", default=DEFAULT_REDIS_URL, help="a database of its own: flushed"
    )
    parser.add_argument(
        "--serve-option",
        action="append",
        default=[],
        metavar="OPT",
        help="passed to `ls-panoptic serve` in part 1 (repeatable), e.g. --serve-option=--threads "
        "--serve-option=4 to compare with the defaults",
    )
    parser.add_argument("--run-snapshot", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_snapshot:
        run_snapshot_child(args.redis_url, args.run_snapshot)
        return
    sizes = QUICK if args.quick else FULL
    report = Report()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; "
        f"Redis {args.redis_url} (flushed before and after)",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="service-bench-") as name,
        bench_redis(args.redis_url) as client,
    ):
        tmp = Path(name)
        started = time.perf_counter()
        scene = make_scene(tmp / "scene", sizes.images)
        print(f"scene: {sizes.images} images {WIDTH}x{HEIGHT}, {BRUSH} brush + {POLY} polygons "
              f"each ({time.perf_counter() - started:.1f} s)", flush=True)  # fmt: skip
        parts = set(args.only or ["ack", "live", "snapshot"])
        if "snapshot" in parts:
            bench_snapshot(sizes, args.redis_url, client, scene, tmp, report)
            client.flushdb()
        if "ack" in parts:
            bench_ack(sizes, args.redis_url, client, scene, tmp, report, args.serve_option)
            client.flushdb()
        if "live" not in parts:
            pass
        elif args.no_label_studio:
            print("\n2-3. skipped (--no-label-studio)")
        else:
            bench_live(sizes, args.redis_url, client, scene, tmp, report)
    report.summary()
    print(f"load average {os.getloadavg()[0]:.2f} at the end (this run's own load included)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"service_bench: {exc}")

"""The review page (issue 11) against its targets, measured in one run against a real Redis.

1. The grid's first page for a project of 10,000 tasks (states written through the real
   ``Store``, so the index is kept by its own transactions; the page's 60 thumbnails cached):
   ``GET /projects/<id>/review`` through Flask's test client (the whole view: index query,
   template), unfiltered and filtered, and with its 60 cached thumbnails fetched. Target: under
   300 ms. Baseline, same run: what a page without the index must do: read every state
   (``Store.states``) and every entry's ``inst2class`` (for the class counts and filter), then
   filter, sort and page in Python.
2. The same index at 100,000 tasks (states and blobs written straight into Redis, then the
   index built lazily in one pass, as for a store written before it existed): build time, and
   the first page query.
3. A thumbnail miss for a 12 MP (4000x3000) JPEG with 40 segments: blob read, mask sampled,
   photo decoded at a reduced JPEG scale, overlay, JPEG encode, cached. Target: under 150 ms.
   Baseline, same run: the photo decoded whole, the mask decoded whole (``Store.get_entry``),
   the overlay drawn at full size, then scaled down.
   Then the detail view's segment areas of that entry: before (each view decoded the mask
   whole as uint32 and counted it), now a miss (counted in the stored dtype, cached by entry
   version) and a hit; and the whole detail view with the areas cached.

    .venv/bin/python bench/review_bench.py [--redis-url URL] [--repeats N] [--quick]

Keys go under a prefix of their own in the given database (default
``redis://127.0.0.1:6379/11``), deleted at the end; nothing else is touched. Prints medians and
ratios; no pass/fail exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import redis  # noqa: E402
from PIL import Image  # noqa: E402

from backend.app import create_app  # noqa: E402
from ls_panoptic.model import Entry  # noqa: E402
from worker._store_codec import encode_entry, encode_state  # noqa: E402
from worker.keys import Keys  # noqa: E402
from worker.review_index import ReviewIndex  # noqa: E402
from worker.settings import Settings  # noqa: E402
from worker.store import EntryState, Store  # noqa: E402
from worker.thumbnails import Pictures, read_mask  # noqa: E402

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/11"
CONFIG = (
    '<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
    + "".join(f'<Label value="class{i}"/>' for i in range(8))
    + "</BrushLabels></View>"
)
ID2LABEL = {**{i: f"class{i}" for i in range(8)}, 8: "background"}
STAMP = "2024-05-01T00:00:00+00:00"
TOKEN = secrets.token_hex(16)


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def small_entry(task: int, rng: np.random.Generator) -> Entry:
    classes = [int(c) for c in rng.integers(0, 8, size=int(rng.integers(1, 6)))]
    mask = np.ones((48, 64), dtype=np.uint32)
    for i, _ in enumerate(classes):
        mask[4 + 8 * i : 10 + 8 * i, 5:60] = i + 2
    inst2class = {1: 8, **{i + 2: c for i, c in enumerate(classes)}}
    meta = {"task_id": task, "annotation_id": task, "completed_by": int(rng.integers(1, 6)),
            "updated_at": STAMP, "warnings": []}  # fmt: skip
    return Entry(f"img{task}.jpg", mask, inst2class, meta)


def fill_store(store: Store, project: int, n: int) -> float:
    rng = np.random.default_rng(1)
    store.set_project(project, CONFIG, ID2LABEL)
    started = time.perf_counter()
    for task in range(1, n + 1):
        if task % 10 == 0:
            store.record_error(project, task, f"task {task}: label 'x' is not in the set", STAMP)
        elif task % 20 == 1:
            store.mark_empty(project, task, STAMP)
        else:
            store.put_entry(project, task, small_entry(task, rng), STAMP)
    return time.perf_counter() - started


def write_cost_without_index(store: Store, n: int) -> float:
    """ms per state write of another project with the store's index hook replaced by nothing
    (what the writes cost before the review index)."""
    import worker.store as store_module

    kept = store_module.queue_reindex
    store_module.queue_reindex = lambda *args: None
    try:
        return fill_store(store, 90, n) / n * 1000
    finally:
        store_module.queue_reindex = kept


def naive_page(client: redis.Redis, store: Store, keys: Keys, project: int, status: str | None,
               class_id: int | None) -> list[int]:  # fmt: skip
    """What the page costs without the index: every state, every entry's classes."""
    import json

    states = store.states(project)
    manifest = client.hgetall(keys.manifest(project))
    with client.pipeline(transaction=False) as pipe:
        for state in states:
            version = manifest.get(str(state.task_id).encode())
            if version is not None:
                pipe.hget(keys.blob(project, state.task_id, version.decode()), "inst2class")
        found = iter(pipe.execute())
    rows = []
    counts: dict[int, int] = {}
    for state in states:
        classes: set[int] = set()
        if manifest.get(str(state.task_id).encode()) is not None:
            classes = set(json.loads(next(found)).values())
        for c in classes:
            counts[c] = counts.get(c, 0) + 1
        if (status is None or state.status == status) and (class_id is None or class_id in classes):
            rows.append(state.task_id)
    return sorted(rows)[:60]


def part_grid(url: str, prefix: str, n: int, repeats: int) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    store = Store(client, keys)
    project = 1
    print(f"\n1. grid's first page, {n:,} tasks (states written through Store)")
    seconds = fill_store(store, project, n)
    per_write = seconds / n * 1000
    print(f"   written in {seconds:.1f} s ({per_write:.2f} ms per state write, index kept)")
    bare = write_cost_without_index(store, n // 5)
    print(f"   the same writes without the index's script: {bare:.2f} ms per state write "
          f"(the index costs {per_write - bare:+.2f} ms, {per_write / bare:.2f}x)")  # fmt: skip
    settings = Settings(redis_url=url, api_token=TOKEN, webhook_token=TOKEN, key_prefix=prefix)
    app = create_app(settings, client)
    web = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    index = ReviewIndex(client, keys)
    first = index.query(project, limit=60)
    pictures = Pictures(client, keys, settings)
    thumbs = []
    for row in first.rows:
        if row.version:
            pictures.thumbnail(project, row.task_id, row.version, 320, 8)
            thumbs.append(f"/projects/{project}/review/{row.task_id}/thumb.jpg?v={row.version}")

    def page(query: str = "") -> Callable[[], None]:
        def get() -> None:
            answer = web.get(f"/projects/{project}/review{query}", headers=headers)
            assert answer.status_code == 200, answer.status_code

        return get

    def page_and_thumbs() -> None:
        page()()
        for thumb in thumbs:
            assert web.get(thumb, headers=headers).status_code == 200

    cases = [
        ("unfiltered, by task id", page(), None, None),
        ("status=error", page("?status=error"), "error", None),
        ("class=3", page("?class=3"), None, 3),
        ("class=3, sorted by last change, descending", page("?class=3&sort=changed&desc=1"),
         None, 3),
    ]  # fmt: skip
    print(f"   {'case':<46} {'page ms':>9} {'naive ms':>9} {'ratio':>7}")
    for name, fn, status, class_id in cases:
        ours = median_ms(fn, repeats)
        naive = median_ms(
            lambda s=status, c=class_id: naive_page(client, store, keys, project, s, c),
            max(3, repeats // 4),
        )
        print(f"   {name:<46} {ours:9.1f} {naive:9.1f} {naive / ours:6.1f}x")
    both = median_ms(page_and_thumbs, repeats)
    print(f"   page + its {len(thumbs)} cached thumbnails: {both:.1f} ms (target < 300 ms)")
    query = median_ms(lambda: index.query(project, limit=60), repeats)
    print(f"   index query alone (first page, counts): {query:.2f} ms")
    detail = first.rows[1].task_id
    filtered = median_ms(page(f"/{detail}?class=3&sort=changed&desc=1"), repeats)
    print(f"   detail view of task {detail} in the list class=3, by last change: {filtered:.1f} ms")


def part_large(url: str, prefix: str, n: int, repeats: int) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    project = 2
    rng = np.random.default_rng(2)
    print(f"\n2. the index at {n:,} tasks (states and blobs written straight, index built lazily)")
    started = time.perf_counter()
    with client.pipeline(transaction=False) as pipe:
        for task in range(1, n + 1):
            entry = small_entry(task, rng)
            version, fields = encode_entry(entry, STAMP)
            pipe.hset(keys.blob(project, task, version), mapping=fields)  # type: ignore[arg-type]
            pipe.hset(keys.manifest(project), str(task), version)
            state = EntryState(task, entry.key, task, STAMP, "ok", None, STAMP)
            pipe.hset(keys.states(project), str(task), encode_state(state))
            if task % 2000 == 0:
                pipe.execute()
        pipe.execute()
    print(f"   written in {time.perf_counter() - started:.1f} s")
    index = ReviewIndex(client, keys)
    started = time.perf_counter()
    index.ensure_built(project)
    print(f"   lazy build (first query): {time.perf_counter() - started:.1f} s")
    for name, kwargs in [
        ("first page", {}),
        ("page 500", {"offset": 500 * 60}),
        ("class=3 & annotator=2", {"class_id": 3, "annotator": "2"}),
        ("sorted by last change, descending", {"sort": "changed", "descending": True}),
    ]:
        ms = median_ms(lambda k=kwargs: index.query(project, limit=60, **k), repeats)  # type: ignore[arg-type]
        print(f"   {name:<40} {ms:7.2f} ms")
    middle = n // 2 + 2  # an ok task (see small_entry's callers: none fail here)
    for name, kwargs in [
        ("detail view's place, unfiltered", {}),
        ("detail view's place, class=3 & annotator=2", {"class_id": 3, "annotator": "2"}),
        ("detail view's place, by last change, desc", {"sort": "changed", "descending": True}),
    ]:
        ms = median_ms(lambda k=kwargs: index.position(project, middle, **k), repeats)  # type: ignore[arg-type]
        print(f"   {name:<40} {ms:7.2f} ms")


def part_thumbnail(url: str, prefix: str, repeats: int) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix)
    store = Store(client, keys)
    project = 3
    height, width = 3000, 4000
    print(f"\n3. thumbnail miss, {width}x{height} JPEG, 40 segments")
    with tempfile.TemporaryDirectory() as folder:
        images = Path(folder)
        rng = np.random.default_rng(3)
        pixels = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        photo = Image.fromarray(pixels, "RGB").resize((width, height), Image.Resampling.BILINEAR)
        photo.save(images / "big.jpg", quality=90)
        mask = np.ones((height, width), dtype=np.uint32)
        inst2class = {1: 8}
        for i in range(40):
            y, x = int(rng.integers(0, height - 400)), int(rng.integers(0, width - 400))
            mask[y : y + 400, x : x + 400] = i + 2
            inst2class[i + 2] = i % 8
        entry = Entry("big.jpg", mask, inst2class, {"warnings": []})
        store.set_project(project, CONFIG, ID2LABEL)
        store.put_entry(project, 1, entry, STAMP, image_url="/data/upload/3/0a1b2c3d-big.jpg")
        settings = Settings(redis_url=url, key_prefix=prefix, images_dir=images)
        pictures = Pictures(client, keys, settings)
        version = pictures.version_of(project, 1)
        assert version is not None

        def miss() -> None:
            client.delete(keys.thumbnail(project, 1, version, 320))
            assert pictures.thumbnail(project, 1, version, 320, 8)

        def naive() -> None:
            from worker.thumbnails import draw_overlay

            stored = store.get_entry(project, 1)
            assert stored is not None
            with Image.open(images / "big.jpg") as img:
                full = img.convert("RGB")
            drawn = draw_overlay(full, stored.panoptic_mask, stored.inst2class, 8)
            drawn.thumbnail((320, 320))

        ours = median_ms(miss, repeats)
        hit = median_ms(lambda: pictures.thumbnail(project, 1, version, 320, 8), repeats)
        base = median_ms(naive, max(3, repeats // 4))
        print(f"   miss {ours:.1f} ms (target < 150 ms); cached {hit:.2f} ms; "
              f"naive (full decode and overlay) {base:.0f} ms: {base / ours:.1f}x")  # fmt: skip
        part_areas(client, keys, pictures, project, version, settings, repeats)


def part_areas(client: redis.Redis, keys: Keys, pictures: Pictures, project: int, version: str,
               settings: Settings, repeats: int) -> None:  # fmt: skip
    """The detail view's segment areas of the same 12 MP entry: before (every view decoded
    the mask whole, widened to uint32, and counted), a miss now (decoded in its stored dtype,
    counted, cached), a hit (the cached JSON); and the whole detail view."""
    print("\n3b. detail view's segment areas, same entry (12 MP, 41 segments)")

    def before() -> None:
        stored = read_mask(client, keys, project, 1, version, 1 << 30)
        assert stored is not None
        np.bincount(stored.mask.ravel())

    def miss() -> None:
        client.delete(keys.review_areas(project, 1, version))
        assert pictures.areas(project, 1, version)

    old = median_ms(before, repeats)
    new_miss = median_ms(miss, repeats)
    hit = median_ms(lambda: pictures.areas(project, 1, version), repeats)
    print(f"   before (every view): {old:.1f} ms; now: miss {new_miss:.1f} ms "
          f"({old / new_miss:.1f}x), cached {hit:.2f} ms ({old / hit:.0f}x)")  # fmt: skip
    served = dataclasses.replace(settings, api_token=TOKEN, webhook_token=TOKEN)
    web = create_app(served, client).test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def view() -> None:
        answer = web.get(f"/projects/{project}/review/1", headers=headers)
        assert answer.status_code == 200, answer.status_code

    print(f"   GET /projects/<id>/review/<task>, areas cached: {median_ms(view, repeats):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 tasks")
    args = parser.parse_args()
    prefix = f"lspbench-review-{secrets.token_hex(4)}"
    client = redis.Redis.from_url(args.redis_url)
    try:
        part_thumbnail(args.redis_url, prefix, args.repeats)
        part_grid(args.redis_url, prefix, 1_000 if args.quick else 10_000, args.repeats)
        part_large(args.redis_url, prefix, 10_000 if args.quick else 100_000, args.repeats)
    finally:
        doomed = list(client.scan_iter(f"{prefix}:*", count=10_000))
        for start in range(0, len(doomed), 1000):
            client.delete(*doomed[start : start + 1000])


if __name__ == "__main__":
    main()

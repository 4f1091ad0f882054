"""``ls-panoptic snapshot --format hf|coco-panoptic`` against a real Redis: the store, filled by
the worker's jobs, written in each format equals ``convert --format`` of the same tasks and
photos (masks, inst2class, photos, splits, failures), read back with ``open_snapshot``."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.convert import convert
from cli.store_cmds import snapshot
from ls_panoptic.coco_panoptic import CocoPanopticWriter
from ls_panoptic.reading import open_snapshot
from tests.stub_labelstudio import P, StubLabelStudio
from worker import runtime
from worker.snapshot_formats import write_formatted
from worker.store import Store

from .test_failed_tasks import LABELS
from .test_queueing import annotation, sync_and_run
from .test_store import T0, make_entry

SPLIT = ["--split", "validation=0.4", "--seed", "3"]
#: where no Label Studio listens: every photo must come from LS_PANOPTIC_IMAGES_DIR
NOWHERE = "http://127.0.0.1:9"


def _photos(folder: Path, task_ids: list[int]) -> Path:
    """The stub's images (``img<id>.jpg``, 40x30 as the regions say), seeded noise."""
    rng = np.random.default_rng(5)
    for task_id in task_ids:
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{task_id}.jpg", quality=90)
    return folder


@pytest.fixture
def project(rt: runtime.Runtime, stub: StubLabelStudio, tmp_path: Path) -> Path:
    """Tasks 1-6 synced by the jobs (task 6 fails: a label outside the config); the photos."""
    for task_id in range(1, 6):
        stub.add(task_id, annotation(task_id * 10, "leaf" if task_id % 2 else "stem"))
    stub.add(6, annotation(60, "weed"))
    sync_and_run(rt, list(range(1, 7)))
    images = tmp_path / "images"
    images.mkdir()
    return _photos(images, list(range(1, 7)))


def _snapshot(rt: runtime.Runtime, images: Path, output: Path, *args: str) -> Any:
    env = {
        "REDIS_URL": rt.settings.redis_url,
        "LS_PANOPTIC_KEY_PREFIX": rt.settings.key_prefix,
        "LABEL_STUDIO_URL": NOWHERE,
        "LABEL_STUDIO_API_KEY": "never-sent",
        "LS_PANOPTIC_IMAGES_DIR": str(images),
    }
    run = CliRunner().invoke(snapshot, ["--project", str(P), "-o", str(output), *args], env=env)
    assert run.exit_code == 1, run.output  # task 6 failed, as in the batch (or a stop)
    return run


def _convert(stub: StubLabelStudio, images: Path, output: Path, *args: str) -> None:
    export = output.parent / "export.json"
    export.write_text(json.dumps([stub.tasks[t] for t in sorted(stub.tasks)]))
    config = output.parent / "config.xml"
    config.write_text(stub.config)
    run = CliRunner().invoke(
        convert,
        [str(export), "--images", str(images), "--label-config", str(config), "-o", str(output),
         "-q", *args],
    )  # fmt: skip
    assert run.exit_code == 1, run.output


def _entries(folder: Path) -> dict[str, dict[str, Any]]:
    return dict(open_snapshot(folder).items())


def _assert_same_entries(live: Path, batch: Path) -> None:
    ours, theirs = _entries(live), _entries(batch)
    assert list(ours) == list(theirs) and len(ours) == 5
    for key, entry in ours.items():
        mask = entry["panoptic_mask"]
        assert mask.dtype == theirs[key]["panoptic_mask"].dtype
        assert np.array_equal(mask, theirs[key]["panoptic_mask"]), key
        assert entry["inst2class"] == theirs[key]["inst2class"], key
    assert open_snapshot(live).id2label == open_snapshot(batch).id2label


def _failures(folder: Path) -> list[tuple[int, str]]:
    meta = json.loads((folder / "ls-panoptic.meta.json").read_text())
    return [(f["task_id"], f["key"]) for f in meta["failures"]]


def test_snapshot_coco_panoptic_equals_convert(
    rt: runtime.Runtime, stub: StubLabelStudio, project: Path, tmp_path: Path
) -> None:
    live, batch = tmp_path / "live", tmp_path / "batch" / "coco"
    batch.parent.mkdir()
    run = _snapshot(rt, project, live, "--format", "coco-panoptic", "--copy-images", *SPLIT)
    _convert(stub, project, batch, "--format", "coco-panoptic", "--copy-images", *SPLIT)
    assert "task 6: region r1: label 'weed'" in run.output
    _assert_same_entries(live, batch)
    for name in ("panoptic_train.json", "panoptic_validation.json"):
        ours = json.loads((live / "annotations" / name).read_text())
        theirs = json.loads((batch / "annotations" / name).read_text())
        assert ours == theirs and ours["images"], name  # split membership, categories
    photos = sorted(p.relative_to(live) for p in (live / "images").rglob("*.jpg"))
    assert photos == sorted(p.relative_to(batch) for p in (batch / "images").rglob("*.jpg"))
    for photo in photos:
        assert (live / photo).read_bytes() == (batch / photo).read_bytes()
    assert _failures(live) == _failures(batch) == [(6, "img6.jpg")]


def test_snapshot_hf_equals_convert(
    rt: runtime.Runtime, stub: StubLabelStudio, project: Path, tmp_path: Path
) -> None:
    live, batch = tmp_path / "live", tmp_path / "batch" / "hf"
    batch.parent.mkdir()
    _snapshot(rt, project, live, "--format", "hf", *SPLIT)
    _convert(stub, project, batch, "--format", "hf", *SPLIT)
    _assert_same_entries(live, batch)
    shards = sorted(p.name for p in (live / "data").glob("*.parquet"))
    assert shards == sorted(p.name for p in (batch / "data").glob("*.parquet"))
    assert {name.split("-")[0] for name in shards} == {"train", "validation"}
    for name in shards:  # the same rows in each split, photos byte for byte
        columns = ["image_name", "task_id", "image", "annotation"]
        ours = pq.read_table(live / "data" / name, columns=columns).to_pylist()
        assert ours == pq.read_table(batch / "data" / name, columns=columns).to_pylist()
    assert (live / "README.md").read_text() == (batch / "README.md").read_text()
    assert _failures(live) == _failures(batch) == [(6, "img6.jpg")]


def test_an_unreadable_photo_fails_its_task_only(
    rt: runtime.Runtime, project: Path, tmp_path: Path
) -> None:
    (project / "img2.jpg").write_bytes(b"not a photo")
    run = _snapshot(rt, project, tmp_path / "live", "--format", "hf")
    assert "task 2:" in run.output
    assert list(_entries(tmp_path / "live")) == ["img1.jpg", "img3.jpg", "img4.jpg", "img5.jpg"]
    assert _failures(tmp_path / "live") == [(2, "img2.jpg"), (6, "img6.jpg")]


def test_a_photo_to_download_while_label_studio_is_down_writes_nothing(
    rt: runtime.Runtime, project: Path, tmp_path: Path
) -> None:
    (project / "img2.jpg").unlink()  # not in the folder: downloaded, from nowhere
    run = _snapshot(rt, project, tmp_path / "live", "--format", "hf")
    assert f"cannot reach Label Studio at {NOWHERE}" in run.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # no output, no .partial


def test_snapshot_format_options_are_checked_as_convert_checks_them(
    rt: runtime.Runtime, project: Path, tmp_path: Path
) -> None:
    env = {"REDIS_URL": rt.settings.redis_url, "LS_PANOPTIC_KEY_PREFIX": rt.settings.key_prefix}
    args = ["--project", str(P), "-o", str(tmp_path / "x.pkl"), "--split", "validation=0.1"]
    run = CliRunner().invoke(snapshot, args, env=env)
    assert run.exit_code == 2
    assert "--split and --copy-images are for --format hf and coco-panoptic" in run.output
    run = CliRunner().invoke(snapshot, [*args[:4], "--split", "validation=2"], env=env)
    assert run.exit_code == 2 and "validation=2" in run.output


def test_snapshot_without_photos_does_not_need_label_studio(
    rt: runtime.Runtime, stub: StubLabelStudio, project: Path, tmp_path: Path
) -> None:
    env = {"REDIS_URL": rt.settings.redis_url, "LS_PANOPTIC_KEY_PREFIX": rt.settings.key_prefix}
    live = tmp_path / "live"
    args = ["--project", str(P), "-o", str(live), "--format", "coco-panoptic", "-q"]
    run = CliRunner().invoke(snapshot, args, env=env)
    assert run.exit_code == 1, run.output
    assert len(_entries(live)) == 5 and not any((live / "images" / "train").iterdir())
    run = CliRunner().invoke(snapshot, [*args, "--copy-images"], env=env)
    assert run.exit_code == 2 and "LABEL_STUDIO_URL" in run.output


def test_every_stored_entry_keeps_its_image_url(rt: runtime.Runtime, project: Path) -> None:
    info = rt.store.pin_snapshot(P)
    urls = [entry.image_url for _task_id, entry in rt.store.snapshot_entries(info)]
    assert urls == [f"/data/upload/{P}/0123abcd-img{t}.jpg" for t in range(1, 6)]


def test_a_formatted_snapshot_holds_about_one_entry_in_memory(store: Store, tmp_path: Path) -> None:
    count, shape = 12, (600, 800)  # 1.9 MB per uint32 mask, 23 MB in all
    for task_id in range(1, count + 1):
        store.put_entry(P, task_id, make_entry(f"{task_id}.jpg", task_id, shape, n=30), T0)
    entry_bytes = shape[0] * shape[1] * 4
    writer = CocoPanopticWriter(
        tmp_path / "coco", LABELS.id2label, frozenset({LABELS.background_id})
    )
    tracemalloc.start()
    try:
        info = write_formatted(
            store, store.pin_snapshot(P), writer, images=None, scratch_dir=tmp_path
        )
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.count == count and not info.failures
    # one mask, its stored form, its BGR copy and the previous one's in the writer's thread
    assert peak < 5 * entry_bytes, f"peak {peak / 1e6:.1f} MB for {entry_bytes / 1e6:.1f} MB"


def test_an_entry_stored_without_its_image_url_says_to_rebuild(
    store: Store, stub: StubLabelStudio, tmp_path: Path
) -> None:
    store.put_entry(P, 1, make_entry("a.jpg", 1, (30, 40)), T0)  # as an older worker stored it
    writer = CocoPanopticWriter(
        tmp_path / "coco", LABELS.id2label, frozenset({LABELS.background_id}), copy_images=True
    )
    info = write_formatted(store, store.pin_snapshot(P), writer, images=stub, scratch_dir=tmp_path)
    (failure,) = info.failures
    assert (failure.task_id, failure.key, info.count) == (1, "a.jpg", 0)
    assert failure.message == (
        "task 1: its entry was stored before the store kept image URLs: run "
        f"`ls-panoptic resync --project {P} --rebuild` once"
    )

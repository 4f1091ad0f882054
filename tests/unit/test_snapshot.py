"""Streaming snapshot writer: files load with plain pickle.load, exactly, in bounded memory."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ls_panoptic.errors import SnapshotError
from ls_panoptic.snapshot import SnapshotWriter, sidecar_path, write_snapshot


def _entries(n: int, seed: int = 0) -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, object]] = {}
    for i in range(n):
        mask = rng.integers(1, 40, size=(17 + i, 23), dtype=np.uint32)
        out[f"img_{i}.jpg"] = {
            "panoptic_mask": mask,
            "inst2class": {int(k): int(k % 5) for k in np.unique(mask)},
        }
    return out


def _load(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as file:
        data: dict[str, dict[str, object]] = pickle.load(file)
    return data


def _assert_same(got: dict[str, dict[str, object]], want: dict[str, dict[str, object]]) -> None:
    assert list(got) == list(want)
    for key, entry in want.items():
        assert set(got[key]) == {"panoptic_mask", "inst2class"}
        mask = got[key]["panoptic_mask"]
        assert isinstance(mask, np.ndarray) and mask.dtype == np.uint32
        assert mask.flags.c_contiguous and mask.flags.writeable
        np.testing.assert_array_equal(mask, entry["panoptic_mask"])
        assert got[key]["inst2class"] == entry["inst2class"]


def test_round_trip_many_entries(tmp_path: Path) -> None:
    want = _entries(40)
    path = tmp_path / "s.pkl"
    assert write_snapshot(path, want.items()) == 40
    _assert_same(_load(path), want)


def test_identical_values_in_different_entries_do_not_alias(tmp_path: Path) -> None:
    # Same key strings and same inst2class dicts across entries: a shared or restarted memo
    # would make later entries point at earlier objects (or the wrong ones).
    mask_a = np.full((4, 5), 1, dtype=np.uint32)
    mask_b = np.full((6, 2), 2, dtype=np.uint32)
    shared = {1: 0}
    want = {
        "a.png": {"panoptic_mask": mask_a, "inst2class": shared},
        "b.png": {"panoptic_mask": mask_b, "inst2class": {2: 3}},
        "c.png": {"panoptic_mask": mask_a, "inst2class": shared},
    }
    path = tmp_path / "s.pkl"
    write_snapshot(path, want.items())
    got = _load(path)
    _assert_same(got, want)
    assert got["a.png"]["panoptic_mask"] is not got["c.png"]["panoptic_mask"]


def test_empty_snapshot_is_an_empty_dict(tmp_path: Path) -> None:
    path = tmp_path / "empty.pkl"
    write_snapshot(path, [])
    assert _load(path) == {}


def test_loads_in_a_process_with_only_numpy(tmp_path: Path) -> None:
    path = tmp_path / "s.pkl"
    want = _entries(3)
    write_snapshot(path, want.items())
    code = (
        "import pickle, sys\n"
        "d = pickle.load(open(sys.argv[1], 'rb'))\n"
        "assert not [m for m in sys.modules if m.startswith(('ls_panoptic', 'PIL', 'cv2'))]\n"
        "m = d['img_2.jpg']['panoptic_mask']\n"
        "print(len(d), m.shape, m.sum())\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.split()
    mask = want["img_2.jpg"]["panoptic_mask"]
    assert isinstance(mask, np.ndarray)
    assert out[0] == "3" and int(out[-1]) == int(mask.sum())


def test_duplicate_key_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "s.pkl"
    entries = _entries(1)
    with pytest.raises(SnapshotError, match="written twice"), SnapshotWriter(path) as snap:
        snap.add("x.jpg", entries["img_0.jpg"])
        snap.add("x.jpg", entries["img_0.jpg"])
    assert not path.exists()
    assert not list(tmp_path.iterdir())


def test_failure_keeps_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "s.pkl"
    old = _entries(2, seed=1)
    write_snapshot(path, old.items())
    with pytest.raises(RuntimeError), SnapshotWriter(path) as snap:
        snap.add("new.jpg", _entries(1)["img_0.jpg"])
        raise RuntimeError("conversion blew up")
    _assert_same(_load(path), old)


def test_unwritable_target_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "s.pkl"
    with pytest.raises(SnapshotError, match="missing-dir"):
        write_snapshot(target, [])


def test_sidecar_path_sits_beside_the_snapshot(tmp_path: Path) -> None:
    assert sidecar_path(tmp_path / "gt.pkl") == tmp_path / "gt.meta.json"


def test_large_entry_data_is_not_copied_into_memory(tmp_path: Path) -> None:
    # A 12 MP uint32 mask is 48 MB; the writer must stream it (tracemalloc sees Python
    # allocations: a copy of the array bytes would show up as ~48 MB).
    import tracemalloc

    mask = np.ones((3000, 4000), dtype=np.uint32)
    tracemalloc.start()
    write_snapshot(
        tmp_path / "big.pkl", [("big.jpg", {"panoptic_mask": mask, "inst2class": {1: 0}})]
    )
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    got = _load(tmp_path / "big.pkl")
    np.testing.assert_array_equal(got["big.jpg"]["panoptic_mask"], mask)


def test_a_failed_background_sync_is_raised_when_the_writer_closes() -> None:
    """The per-entry fdatasync runs in a thread; its error must not be lost (a pipe cannot be
    synced: EINVAL, a real failure)."""
    import os

    from ls_panoptic.snapshot import _BackgroundSync

    read_end, write_end = os.pipe()
    try:
        sync = _BackgroundSync(write_end)
        sync.request()
        with pytest.raises(OSError):
            sync.close()
    finally:
        os.close(read_end)
        os.close(write_end)


def test_entries_are_on_disk_before_the_snapshot_is_closed(tmp_path: Path) -> None:
    """After add() returns, the bytes written so far are in the file (the background sync
    works on them while the next entry is converted)."""
    path = tmp_path / "out.pkl"
    mask = np.arange(600 * 800, dtype=np.uint32).reshape(600, 800)
    with SnapshotWriter(path) as snap:
        snap.add("a.jpg", {"panoptic_mask": mask, "inst2class": {1: 0}})
        partial = path.with_name(path.name + ".partial")
        assert partial.stat().st_size > mask.nbytes
        assert not path.exists()
    with path.open("rb") as file:
        assert np.array_equal(pickle.load(file)["a.jpg"]["panoptic_mask"], mask)

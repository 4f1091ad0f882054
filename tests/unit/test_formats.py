"""The pieces of the output formats: splits, segment facts, segment PNGs, the lazy pickle
reader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from ls_panoptic.coco_panoptic import decode_segment_png, encode_segment_png
from ls_panoptic.reading import open_snapshot
from ls_panoptic.segments import segment_stats
from ls_panoptic.snapshot import write_snapshot
from ls_panoptic.splits import parse_splits, split_of


def test_a_split_depends_on_key_and_seed_only() -> None:
    keys = [f"img_{n:04d}.jpg" for n in range(2000)]
    first = {k: split_of(k, {"validation": 0.1}, seed=5) for k in keys[:1000]}
    again = {k: split_of(k, {"validation": 0.1}, seed=5) for k in keys}  # more images added
    assert all(again[k] == s for k, s in first.items())
    share = sum(s == "validation" for s in again.values()) / len(again)
    assert 0.08 < share < 0.12
    assert {k: split_of(k, {"validation": 0.1}, seed=6) for k in keys} != again


def test_parse_splits() -> None:
    assert parse_splits(["validation=0.1", "test=0.2"]) == {"validation": 0.1, "test": 0.2}
    for bad in (["validation"], ["validation=x"], ["validation=0"], ["train=0.1"],
                ["a=0.5", "b=0.5"], ["a=0.1", "a=0.2"]):  # fmt: skip
        with pytest.raises(ValueError):
            parse_splits(bad)


def test_segment_stats_match_a_pass_per_segment() -> None:
    mask = np.random.default_rng(3).integers(1, 9, size=(37, 53)).astype(np.uint32)
    mask[5:20, 10:30] = 99
    stats = segment_stats(mask)
    assert stats.ids.tolist() == sorted(int(i) for i in np.unique(mask))
    for seg, area, box in zip(stats.ids, stats.areas, stats.boxes, strict=True):
        rows, cols = np.nonzero(mask == seg)
        assert area == rows.size
        assert box.tolist() == [cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1]


def test_segment_png_round_trips_24_bit_ids() -> None:
    mask = np.random.default_rng(4).integers(1, 2**24, size=(31, 17)).astype(np.uint32)
    assert np.array_equal(decode_segment_png(encode_segment_png(mask)), mask)


def _entries() -> dict[str, dict[str, object]]:
    rng = np.random.default_rng(5)
    out: dict[str, dict[str, object]] = {}
    for n, count in enumerate([1, 2, 7]):  # one instance: inst2class pickles with SETITEM
        mask = rng.integers(1, count + 1, size=(9 + n, 11)).astype(np.uint32)
        out[f"im{n}.png"] = {
            "panoptic_mask": mask,
            "inst2class": {i: i % 3 for i in range(1, count + 1)},
        }
    return out


def test_streamed_pickle_reads_entry_by_entry(tmp_path: Path) -> None:
    entries = _entries()
    write_snapshot(tmp_path / "gt.pkl", entries.items())
    got = list(open_snapshot(tmp_path / "gt.pkl").items())
    assert [k for k, _ in got] == list(entries)
    for key, entry in got:
        assert np.array_equal(entry["panoptic_mask"], entries[key]["panoptic_mask"])
        assert entry["inst2class"] == entries[key]["inst2class"]


def test_a_plain_pickle_is_read_whole(tmp_path: Path) -> None:
    entries = _entries()
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(entries, protocol=5))
    snapshot = open_snapshot(tmp_path / "plain.pkl")
    assert list(snapshot) == list(entries)
    assert np.array_equal(snapshot["im2.png"]["panoptic_mask"], entries["im2.png"]["panoptic_mask"])


def test_open_snapshot_names_what_it_reads(tmp_path: Path) -> None:
    from ls_panoptic.errors import SnapshotError

    with pytest.raises(SnapshotError, match="not a snapshot pickle"):
        open_snapshot(tmp_path)


@pytest.mark.parametrize("orientation", ["display", "file"])
def test_a_rotated_photo_is_stored_in_its_masks_frame_untagged(
    tmp_path: Path, orientation: str
) -> None:
    import io

    from PIL import Image, ImageOps

    from ls_panoptic.images import read_image_info
    from ls_panoptic.segments import displayed_photo

    stored = Image.new("RGB", (40, 30), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise: 30 wide, 40 high
    stored.save(tmp_path / "r.jpg", format="JPEG", exif=exif)
    info = read_image_info(tmp_path / "r.jpg")
    data, suffix = displayed_photo(info, orientation)  # type: ignore[arg-type]
    with Image.open(io.BytesIO(data)) as photo:
        assert suffix == ".jpg" and photo.format == "JPEG"
        assert photo.getexif().get(0x0112) is None
        assert photo.size == ((30, 40) if orientation == "display" else (40, 30))
        assert ImageOps.exif_transpose(photo).size == photo.size  # no reader turns it again


@pytest.mark.parametrize("fmt", ["hf", "coco-panoptic"])
def test_a_failed_write_leaves_no_folder(tmp_path: Path, fmt: str) -> None:
    from ls_panoptic.coco_panoptic import CocoPanopticWriter
    from ls_panoptic.hf_dataset import HFDatasetWriter
    from ls_panoptic.model import Entry

    id2label = {0: "leaf", 1: "background"}
    writer = (
        HFDatasetWriter(tmp_path / "out", id2label)
        if fmt == "hf"
        else CocoPanopticWriter(tmp_path / "out", id2label, frozenset({1}))
    )
    entry = Entry("a.png", np.ones((4, 5), dtype=np.uint32), {1: 1}, {"task_id": 1})
    with pytest.raises(RuntimeError), writer:
        if fmt == "coco-panoptic":
            writer.add(entry, None)
        raise RuntimeError("strict: a later image failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("orientation_tag", [3, 6, 8])
def test_a_rotated_palette_photo_keeps_its_colours(tmp_path: Path, orientation_tag: int) -> None:
    """The photo is turned as Pillow shows it (``exif_transpose``), in its own mode: a palette
    PNG is not mistaken for grey levels, and its pixels land where the mask's do."""
    import io

    from PIL import Image, ImageOps

    from ls_panoptic.images import read_image_info
    from ls_panoptic.segments import displayed_photo

    stored = Image.new("P", (5, 3))
    stored.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    stored.putdata([1, 2, 3, 1, 2, 3, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    exif = Image.Exif()
    exif[0x0112] = orientation_tag
    stored.save(tmp_path / "p.png", format="PNG", exif=exif)
    info = read_image_info(tmp_path / "p.png")
    data, suffix = displayed_photo(info, "display")
    with Image.open(tmp_path / "p.png") as original, Image.open(io.BytesIO(data)) as photo:
        expected = ImageOps.exif_transpose(original).convert("RGB")
        assert suffix == ".png"
        assert photo.getexif().get(0x0112) is None
        assert list(photo.convert("RGB").getdata()) == list(expected.getdata())

"""Fuzzing the conversion core with corrupt, absurd and wrongly typed Label Studio results.

Property: ``convert_task`` on a task that ``task_from_dict`` accepts (what an export, a webhook or
the SDK hands over) returns ``None``, or an entry that keeps the output contract, or raises
``ImageError`` naming the problem - never another exception, never for long (``SLOW_SECONDS``),
and never with more than ``PEAK_BYTES`` allocated (``tracemalloc`` sees numpy's buffers too).
Sizes beyond ``max_pixels`` and region counts beyond ``max_regions`` are refused before anything
image-sized exists, whatever the region kind. The brush RLE decoder either raises ``RLEError``
or returns well-formed runs that agree with label-studio-sdk's decoder.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import math
import pickle
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle, encode_rle
from PIL import Image

from cli.main import cli
from ls_panoptic.convert import convert_task
from ls_panoptic.errors import ImageError, RLEError
from ls_panoptic.images import ImageInfo
from ls_panoptic.labels import labelset_from_labels
from ls_panoptic.model import ConvertOptions, Entry
from ls_panoptic.rle import decode_runs
from ls_panoptic.tasks import task_from_dict

from . import strategies

LABELS = labelset_from_labels({"leaf", "stem"})
SMALL = ConvertOptions(max_pixels=48 * 48, max_regions=12)  # fuzzed sizes straddle these
PEAK_BYTES = 32 * 2**20
SLOW_SECONDS = 10.0
PREFIX = "data:image/png;base64,"
TYPES = ("brushlabels", "bitmasklabels", "polygonlabels", "rectanglelabels", "ellipselabels")

# -- strategies -------------------------------------------------------------------------------

json_values = strategies.json_values(max_text=8, max_items=3, max_key=6, max_leaves=8)
absurd_sizes = st.sampled_from([0, -1, 10**6, 2**31, 2**32 + 1, 10**400, 12.5, math.nan, math.inf])
extreme_percents = st.sampled_from(
    [1e6, 1e6 + 1, -1e7, 1e300, 10**400, math.nan, math.inf, -math.inf, True, "50", None]
)


_ODDS = {n: st.sampled_from([False] * (n - 1) + [True]) for n in (20, 50)}


def broken(draw: st.DrawFn, one_in: int = 20) -> bool:
    """Whether to break this field: about once in ``one_in`` (a fuzzed field among sound ones).

    (Not ``integers(...) == 0``: hypothesis draws boundary values far more often.)"""
    return bool(draw(_ODDS[one_in]))


sound_percents = st.floats(min_value=-20, max_value=120)
broken_percents = extreme_percents | json_values
sound_labels = st.sampled_from([["leaf"], ["stem"], ["stem", "leaf"], ["background"]])
broken_labels = st.sampled_from([[], ["unknown"], [""], "leaf"]) | json_values
broken_sizes = absurd_sizes | json_values
broken_ids = st.none() | st.text(max_size=4)
broken_kinds = st.sampled_from(["labels", "keypointlabels", "x"])
bad_urls = st.sampled_from(["text", "b64", "signature", "truncated", "resized", "mode", "value"])


def percent(draw: st.DrawFn) -> Any:
    return draw(broken_percents if broken(draw) else sound_percents)


@lru_cache(maxsize=4096)
def png_bytes(mode: str, width: int, height: int, seed: int) -> bytes:
    values = np.random.default_rng(seed).integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    image = Image.fromarray(values, "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def data_urls(draw: st.DrawFn, width: int, height: int) -> Any:
    """Bitmask data URLs: mostly a sound PNG of the region's size; else garbage text, bad
    base64, non-PNG bytes, a truncated PNG, a PNG of another size or mode, or not a string."""
    kind = draw(bad_urls) if broken(draw) else "png"
    if kind == "text":
        return PREFIX + draw(st.text(max_size=30))
    if kind == "b64":
        return PREFIX + base64.b64encode(draw(st.binary(max_size=60))).decode()
    if kind == "signature":
        return (
            PREFIX + base64.b64encode(b"\x89PNG\r\n\x1a\n" + draw(st.binary(max_size=60))).decode()
        )
    if kind == "value":
        return draw(json_values)
    modes = ["LA", "L", "RGB", "P", "1", "I;16"] if kind == "mode" else ["RGBA"]
    mode = draw(st.sampled_from(modes))
    png_width = width + 1 if kind == "resized" else width
    data = png_bytes(mode, png_width, height, draw(st.integers(0, 9)))
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    return PREFIX + base64.b64encode(data).decode()


def ls_rle(alpha: npt.NDArray[np.uint8]) -> list[int]:
    """Label Studio's encoding of an alpha plane (RGBA with R = G = B = A)."""
    return [int(b) for b in encode_rle(np.repeat(alpha.reshape(-1), 4))]  # type: ignore[no-untyped-call]


def sound_rle(width: int, height: int, seed: int) -> list[int]:
    return list(_sound_rle(width, height, seed))


@lru_cache(maxsize=4096)
def _sound_rle(width: int, height: int, seed: int) -> tuple[int, ...]:
    alpha = np.random.default_rng(seed).integers(0, 3, size=(height, width), dtype=np.uint8)
    return tuple(ls_rle(alpha * 127))


@st.composite
def corrupt_rles(draw: st.DrawFn, width: int, height: int) -> list[int]:
    """A real brush stream for this size, then cut, overwritten or extended; or random records
    behind a header that fits the size (so the decoder gets past the size check)."""
    if draw(st.booleans()):
        stream = sound_rle(width, height, draw(st.integers(0, 99)))
        for _ in range(draw(st.integers(0, 3))):
            stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
        stream = stream[: draw(st.integers(0, len(stream)))]
        return stream + draw(st.lists(st.integers(0, 255), max_size=8))
    widths = draw(st.lists(st.integers(0, 15), min_size=4, max_size=4))
    header = (height * width * 4) << 24 | 7 << 19 | draw(st.integers(0, 7))
    for shift, value in zip((15, 11, 7, 3), widths, strict=True):
        header |= value << shift
    return list(header.to_bytes(7, "big")) + draw(st.lists(st.integers(0, 255), max_size=80))


def points(draw: st.DrawFn) -> Any:
    if broken(draw):
        return draw(json_values | st.lists(st.lists(sound_percents, min_size=2, max_size=2),
                                            max_size=2))  # fmt: skip
    count = draw(st.integers(3, 7))
    return [draw(json_values) if broken(draw) else [percent(draw), percent(draw)]
            for _ in range(count)]  # fmt: skip


@st.composite
def values(draw: st.DrawFn, type_: str, width: int, height: int) -> dict[str, Any]:
    """The ``value`` of one result item of ``type_``: mostly sound, with broken fields."""
    value: dict[str, Any] = {}
    if type_ == "polygonlabels":
        value["points"] = points(draw)
    elif type_ in ("rectanglelabels", "ellipselabels"):
        names: tuple[str, ...] = ("x", "y")
        names += ("width", "height") if type_ == "rectanglelabels" else ("radiusX", "radiusY")
        for name in (*names, "rotation"):
            if not broken(draw):  # now and then missing
                value[name] = percent(draw)
    elif type_ == "bitmasklabels":
        value["imageDataURL"] = draw(data_urls(width, height))
    elif type_ == "brushlabels":
        value["format"] = draw(st.sampled_from(["png", None, 1])) if broken(draw) else "rle"
        value["rle"] = (
            draw(corrupt_rles(width, height) | json_values)
            if broken(draw)
            else sound_rle(width, height, draw(st.integers(0, 99)))
        )
    value[type_] = draw(broken_labels if broken(draw) else sound_labels)
    return value


@st.composite
def results(draw: st.DrawFn) -> list[Any]:
    """An annotation ``result`` of mostly sound items of one size, with broken fields, items of
    other sizes or kinds, and now and then something that is no item at all."""
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    items: list[Any] = []
    for n in range(draw(st.integers(0, 10))):
        type_ = draw(broken_kinds if broken(draw) else st.sampled_from(TYPES))
        geometry = draw(st.sampled_from(TYPES)) if type_ in ("labels", "x") else type_
        item: dict[str, Any] = {"type": type_, "value": draw(values(geometry, width, height))}
        item["id"] = draw(broken_ids) if broken(draw) else f"r{n % 4}"
        item["original_width"] = draw(broken_sizes) if broken(draw) else width
        item["original_height"] = draw(broken_sizes) if broken(draw) else height
        if broken(draw):
            item["image_rotation"] = percent(draw)
        items.append(draw(json_values) if broken(draw, 50) else item)
    return items


nasty = st.one_of(
    absurd_sizes,
    extreme_percents,
    st.sampled_from(
        ["", "\u00e9", PREFIX + "\u00e9t\u00e9", PREFIX, "\x00", "1e400", "NaN", "rle"]
    ),
    st.integers(),
    st.floats(),
    json_values,
)


def places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON value (long lists: their ends only), as a path of keys/indices."""
    children: list[Any] = []
    if isinstance(value, dict):
        children = list(value)
    elif isinstance(value, list):
        children = list(range(len(value)))
        if len(children) > 6:
            children = children[:3] + children[-3:]
    for child in children:
        yield (*path, child)
        yield from places(value[child], (*path, child))


@st.composite
def one_field_broken(draw: st.DrawFn) -> list[Any]:
    """A sound result (1 to 4 items of one size) with exactly one value replaced."""
    width, height = draw(st.integers(1, 32)), draw(st.integers(1, 32))
    result = []
    for n in range(draw(st.integers(1, 4))):
        type_ = draw(st.sampled_from(TYPES))
        value = draw(values(type_, width, height))
        result.append({"id": f"r{n}", "type": type_, "value": value, "original_width": width,
                       "original_height": height, "image_rotation": 0})  # fmt: skip
    result = copy.deepcopy(result)  # its lists may be shared with strategies: never mutate those
    *path, last = draw(st.sampled_from(list(places(result))))
    target: Any = result
    for step in path:
        target = target[step]
    target[last] = draw(nasty)
    return result


# -- checks -----------------------------------------------------------------------------------


@contextmanager
def bounded(peak_bytes: int = PEAK_BYTES, seconds: float = SLOW_SECONDS) -> Iterator[None]:
    """Fail when the block allocates more than ``peak_bytes`` at once or runs too long."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert peak <= peak_bytes, f"allocated {peak / 2**20:.1f} MiB at peak"
    assert elapsed <= seconds, f"took {elapsed:.1f} s"


def assert_contract(entry: Entry, size: tuple[int, int] | None = None) -> None:
    """DESIGN 1: uint32 (height, width), C-contiguous, ids 1..N, inst2class exactly those ids."""
    mask = entry.panoptic_mask
    assert mask.dtype == np.uint32 and mask.ndim == 2 and mask.flags.c_contiguous
    if size is not None:
        assert mask.shape == size
    ids = np.unique(mask).tolist()
    assert ids == list(range(1, len(ids) + 1)) == sorted(entry.inst2class)
    assert all(type(k) is int and type(v) is int for k, v in entry.inst2class.items())
    assert set(entry.inst2class.values()) <= set(LABELS.id2label)
    json.dumps(entry.meta, allow_nan=False)  # the sidecar and the store need plain JSON


def convert_or_refuse(
    result: Any, options: ConvertOptions, image: ImageInfo | None = None
) -> Entry | None:
    """Convert one task holding ``result``: an entry, ``None``, or ``None`` after ImageError."""
    raw = {"id": 7, "data": {"image": "/data/upload/1/0a1b2c3d-x.png"},
           "annotations": [{"id": 1, "result": result}]}  # fmt: skip
    try:
        task = task_from_dict(raw)
    except ValueError:
        return None  # refused at the boundary (export reader, Label Studio client)
    try:
        with bounded():
            entry = convert_task(task, "x.png", LABELS, options, image)
    except ImageError as exc:
        assert str(exc).startswith("task 7: ")
        return None
    if entry is not None:
        assert_contract(entry)
    return entry


# -- properties -------------------------------------------------------------------------------


def test_arbitrary_results_convert_or_raise_image_error(fuzz: hypothesis_settings) -> None:
    @fuzz
    @given(result=results() | json_values)
    def check(result: Any) -> None:
        convert_or_refuse(result, SMALL)

    check()


def test_one_broken_field_fails_its_image_only_with_an_image_error(
    fuzz: hypothesis_settings,
) -> None:
    @fuzz
    @given(result=one_field_broken())
    def check(result: list[Any]) -> None:
        convert_or_refuse(result, SMALL)

    check()


def test_corrupt_brush_rle_raises_rle_error_or_agrees_with_the_sdk(
    fuzz: hypothesis_settings,
) -> None:
    @fuzz
    @given(data=st.data(), width=st.integers(1, 24), height=st.integers(1, 24))
    def check(data: st.DataObject, width: int, height: int) -> None:
        stream = data.draw(corrupt_rles(width, height), label="rle")
        threshold = data.draw(st.sampled_from([1, 128, 255]), label="threshold")
        try:
            with bounded():
                starts, stops = decode_runs(stream, height, width, threshold)
        except RLEError:
            return
        assert starts.dtype == stops.dtype == np.int64 and starts.shape == stops.shape
        assert (starts < stops).all() and (stops[:-1] < starts[1:]).all()
        assert starts.size == 0 or (starts[0] >= 0 and stops[-1] <= width * height)
        mask = np.zeros(width * height, dtype=bool)
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            mask[start:stop] = True
        try:
            reference = np.asarray(decode_rle(stream), dtype=np.uint8)
        except Exception:  # the SDK has no error contract on corrupt streams
            return
        if reference.size == width * height * 4:
            np.testing.assert_array_equal(mask, reference.reshape(-1, 4)[:, 3] >= threshold)

    check()


def test_garbage_bitmasks_polygons_and_boxes(fuzz: hypothesis_settings) -> None:
    @fuzz
    @given(data=st.data(), type_=st.sampled_from(TYPES[1:]))
    def check(data: st.DataObject, type_: str) -> None:
        width, height = data.draw(st.integers(1, 32)), data.draw(st.integers(1, 32))
        value = data.draw(values(type_, width, height), label="value")
        item = {"id": "r1", "type": type_, "value": value, "original_width": width,
                "original_height": height}  # fmt: skip
        entry = convert_or_refuse([item], SMALL)
        if entry is not None:
            assert entry.panoptic_mask.shape == (height, width)

    check()


# -- absurd sizes and counts, with the default limits -----------------------------------------

GEOMETRY: dict[str, dict[str, Any]] = {
    "polygonlabels": {"points": [[0, 0], [100, 0], [50, 100]]},
    "rectanglelabels": {"x": 0, "y": 0, "width": 100, "height": 100},
    "ellipselabels": {"x": 50, "y": 50, "radiusX": 50, "radiusY": 50},
    "bitmasklabels": {
        "imageDataURL": PREFIX + base64.b64encode(png_bytes("RGBA", 4, 4, 0)).decode()
    },
    "brushlabels": {"format": "rle", "rle": ls_rle(np.full((4, 4), 255, dtype=np.uint8))},
}


def item(type_: str, width: int, height: int, label: str = "leaf", **extra: Any) -> dict[str, Any]:
    value = {**GEOMETRY[type_], type_: [label]}
    return {"id": extra.pop("id", "r1"), "type": type_, "value": value,
            "original_width": width, "original_height": height, **extra}  # fmt: skip


def refusal(result: list[Any], options: ConvertOptions, image: ImageInfo | None = None) -> str:
    """The ImageError message of converting ``result``, within small time and memory."""
    task = task_from_dict({"id": 7, "data": {}, "annotations": [{"id": 1, "result": result}]})
    with bounded(peak_bytes=64 * 2**20, seconds=5.0), pytest.raises(ImageError) as info:
        convert_task(task, "x.png", LABELS, options, image)
    return str(info.value)


INTERESTING: list[Any] = [
    0, -1, 10**6, 2**31, 2**63, 10**400, -(10**400), 12.5, 1e300, -1e300, math.inf, math.nan,
    True, None, "", "10", "\u00e9", PREFIX + "\u00e9t\u00e9", PREFIX + "AAAA", [], {}, [[1, 2]],
    {"x": 1}, [None] * 3,
]  # fmt: skip


def test_every_field_of_every_kind_with_interesting_values() -> None:
    """Deterministic complement of the fuzzing: each place of a sound item of each kind, set
    to each of ``INTERESTING``, converts or fails its image with an ImageError."""
    failures = []
    for type_ in TYPES:
        sound = [item(type_, 4, 4), item("rectanglelabels", 4, 4, id="r2")]
        for path in places(sound[:1]):
            for value in INTERESTING:
                result = json.loads(json.dumps(sound))
                target = result
                for step in path[:-1]:
                    target = target[step]
                target[path[-1]] = value
                try:
                    convert_or_refuse(result, SMALL)
                except Exception as exc:  # the property under test: nothing else escapes
                    failures.append(f"{path} = {value!r:.30}: {type(exc).__name__}: {exc!s:.80}")
    assert failures == []


@pytest.mark.parametrize("type_", TYPES)
@pytest.mark.parametrize(("width", "height"), [(10**6, 10**6), (10_001, 10_000), (2**31, 1)])
def test_absurd_sizes_are_refused_before_any_allocation(
    type_: str, width: int, height: int
) -> None:
    message = refusal([item(type_, width, height)], ConvertOptions())
    assert f"{width}x{height}" in message
    assert "limit of 100000000 pixels" in message and "max_pixels" in message


def test_an_absurd_image_file_size_is_refused_too() -> None:
    image = ImageInfo(Path("huge.jpg"), height=10**6, width=10**6)
    message = refusal([], ConvertOptions(), image)
    assert "1000000x1000000" in message and "max_pixels" in message


def test_the_pixel_limit_is_an_option() -> None:
    result = [item("rectanglelabels", 30, 20)]
    assert "limit of 599 pixels" in refusal(result, ConvertOptions(max_pixels=599))
    entry = convert_or_refuse(result, ConvertOptions(max_pixels=600))
    assert entry is not None and entry.panoptic_mask.shape == (20, 30)


def test_absurd_region_counts_are_refused_before_rasterising() -> None:
    result = [item("polygonlabels", 4000, 3000, id=f"r{n}") for n in range(10_001)]
    message = refusal(result, ConvertOptions())
    assert "10001 regions" in message and "limit of 10000" in message
    assert "max_regions" in message


def test_the_region_limit_is_an_option() -> None:
    result = [item("rectanglelabels", 8, 8, id=f"r{n}") for n in range(5)]
    assert "5 regions" in refusal(result, ConvertOptions(max_regions=4))
    assert convert_or_refuse(result, ConvertOptions(max_regions=5)) is not None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"original_width": 11}, "disagree on the image size"),
        ({"original_width": 10**400}, "disagree on the image size"),
        ({"original_height": 1e400}, "not a number"),
        ({"original_height": "10"}, "not a number"),
        ({"original_height": 10.5}, "positive integer"),
        ({"image_rotation": 10**400}, "image_rotation is not a number"),
        ({"image_rotation": math.nan}, "image_rotation is not a number"),
    ],
)
def test_sizes_that_disagree_or_are_not_sizes(change: dict[str, Any], reason: str) -> None:
    result = [item("rectanglelabels", 10, 10), item("ellipselabels", 10, 10, id="r2") | change]
    assert reason in refusal(result, ConvertOptions())


def test_a_polygon_with_very_many_vertices_stays_within_memory() -> None:
    """A zigzag crosses every row once per vertex (4 million crossings here, ~180 MiB if all
    were held at once): rows are swept in bands, so memory stays bounded."""
    zigzag = [[100.0 * n / 2000, 0.0 if n % 2 else 100.0] for n in range(2000)]
    value = {"points": zigzag, "polygonlabels": ["leaf"]}
    raw = {"id": "p1", "type": "polygonlabels", "value": value, "original_width": 2000,
           "original_height": 2000}  # fmt: skip
    task = task_from_dict({"id": 7, "data": {}, "annotations": [{"id": 1, "result": [raw]}]})
    with bounded(peak_bytes=64 * 2**20):  # the canvas and mask take 20 MB
        convert_task(task, "x.png", LABELS, ConvertOptions())


POLYGONS: dict[str, Any] = {
    "two points": [[0, 0], [50, 50]],
    "no points": [],
    "NaN": [[0, 0], [math.nan, 0], [0, 50]],
    "infinity": [[0, 0], [math.inf, 0], [0, 50]],
    "past the float range": [[0, 0], [10**400, 0], [0, 50]],
    "huge": [[0, 0], [1e300, 0], [0, 50]],
    "strings": [["0", "0"], ["50", "0"], ["0", "50"]],
    "triples": [[0, 0, 0], [50, 0, 0], [0, 50, 0]],
    "not a list": "0,0 50,0 0,50",
    "objects": [{"x": 0, "y": 0}] * 3,
    "nested": [[[0, 0]], [[50, 0]], [[0, 50]]],
    "null": None,
}


@pytest.mark.parametrize("case", list(POLYGONS))
def test_broken_polygons_fail_their_region(case: str) -> None:
    value = {"points": POLYGONS[case], "polygonlabels": ["leaf"]}
    raw = {"id": "p1", "type": "polygonlabels", "value": value, "original_width": 10,
           "original_height": 10}  # fmt: skip
    good = item("rectanglelabels", 10, 10, id="r2")
    message = refusal([good, raw], ConvertOptions())
    assert "region p1: polygon" in message


# -- batch: one bad image among good ones -----------------------------------------------------

BAD_TASKS: dict[str, list[dict[str, Any]]] = {
    "absurd size": [item("rectanglelabels", 10**6, 10**6)],
    "size past the float range": [item("rectanglelabels", 10**400, 8)],
    "rotation past the float range": [item("rectanglelabels", 8, 8, image_rotation=10**400)],
    "corrupt rle": [{**item("brushlabels", 4, 4), "value": {"format": "rle", "rle": [255] * 9,
                                                           "brushlabels": ["leaf"]}}],
    "non-ASCII data URL": [{**item("bitmasklabels", 4, 4),
                            "value": {"imageDataURL": PREFIX + "\u00e9t\u00e9",
                                      "bitmasklabels": ["leaf"]}}],
    "polygon with two points": [{**item("polygonlabels", 8, 8),
                                 "value": {"points": [[0, 0], [1, 1]], "polygonlabels": ["leaf"]}}],
}  # fmt: skip


def test_batch_writes_the_good_images_and_names_each_bad_one(tmp_path: Path) -> None:
    tasks = []
    for n, result in enumerate([[item("rectanglelabels", 8, 6)], *BAD_TASKS.values()], 1):
        tasks.append({"id": n, "data": {"image": f"/data/upload/1/0a1b2c3d-img{n}.png"},
                      "annotations": [{"id": 100 + n, "result": result}]})  # fmt: skip
    tasks.append({**tasks[0], "id": 99, "data": {"image": "/data/upload/1/0a1b2c3d-last.png"}})
    export, output = tmp_path / "export.json", tmp_path / "gt.pkl"
    export.write_text(json.dumps(tasks))
    answer = CliRunner().invoke(cli, ["convert", str(export), "--output", str(output), "--quiet"])
    assert answer.exit_code == 1, answer.output
    assert "Traceback" not in answer.output
    for n in range(2, len(BAD_TASKS) + 2):
        assert f"task {n}" in answer.output
    snapshot = load_pickle(output)
    assert sorted(snapshot) == ["img1.png", "last.png"]
    for key in snapshot:
        assert_contract(Entry(key, **snapshot[key]), (6, 8))


def load_pickle(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        loaded: dict[str, Any] = pickle.load(file)
    return loaded

"""ls_panoptic._rlewalk, the C record walk, held to the numpy walk it stands in for.

``decode_runs`` uses the C walk when the extension is built and falls back to
``decode_runs_numpy`` whenever the C walk returns None. So: wherever the C walk answers, its runs
must be exactly the numpy walk's; wherever the numpy walk refuses a stream, the C walk must return
None (and decode_runs then raises the numpy walk's RLEError, word for word). Streams: Label
Studio SDK-encoded masks, random record streams (literal-heavy, any rle_sizes), the largest image
a 32-bit word count allows, and corrupt, truncated and random streams (hypothesis).

The C-specific tests skip when the extension is not built, unless ``LSP_REQUIRE_C_EXT=1`` (CI):
then ``test_the_extension_is_built_when_required`` fails.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import ModuleType

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle, encode_rle

from ls_panoptic import rle as rle_module
from ls_panoptic.errors import RLEError
from ls_panoptic.rle import decode_runs, decode_runs_numpy

Alpha = npt.NDArray[np.uint8]
Runs = tuple[list[int], list[int]]
THRESHOLDS = (-5, 0, 1, 127, 128, 255, 256, 1000)
LS_SIZES = (3, 4, 8, 16)


def _load() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("ls_panoptic._rlewalk"), ""
    except ImportError as exc:
        return None, str(exc)


WALK, NOT_BUILT = _load()
needs_c = pytest.mark.skipif(
    WALK is None,
    reason=f"ls_panoptic._rlewalk is not built ({NOT_BUILT}): decode_runs uses the numpy walk; "
    "reinstall with a C compiler (pip install -e .) to test the C walk",
)


def test_the_extension_is_built_when_required() -> None:
    """CI sets LSP_REQUIRE_C_EXT=1, so that an extension that failed to build cannot pass."""
    assert rle_module.DECODER in {"C", "numpy"}
    assert (rle_module.DECODER == "C") is (WALK is not None)
    if os.environ.get("LSP_REQUIRE_C_EXT", "").strip() == "1":
        assert WALK is not None, f"LSP_REQUIRE_C_EXT=1 but ls_panoptic._rlewalk: {NOT_BUILT}"


# --- helpers -----------------------------------------------------------------------------------


def c_runs(data: object, height: object, width: object, threshold: object) -> Runs | None:
    """The C walk's answer as lists, checking the form of its output on the way."""
    assert WALK is not None
    found = WALK.runs(data, height, width, threshold)
    if found is None:
        return None
    starts_raw, stops_raw = found
    assert type(starts_raw) is bytearray and type(stops_raw) is bytearray
    starts = np.frombuffer(starts_raw, dtype=np.int64)
    stops = np.frombuffer(stops_raw, dtype=np.int64)
    assert starts.shape == stops.shape
    return starts.tolist(), stops.tolist()


def outcome(
    decode: Callable[..., tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    data: object,
    height: object,
    width: object,
    threshold: object = 128,
) -> Runs | str:
    """The runs as lists, or the RLEError's message."""
    try:
        starts, stops = decode(data, height, width, threshold)
    except RLEError as exc:
        return f"RLEError: {exc}"
    assert starts.dtype == np.int64 and stops.dtype == np.int64
    return starts.tolist(), stops.tolist()


def assert_c_agrees(
    data: object,
    height: object,
    width: object,
    thresholds: Sequence[object] = (128,),
    must_answer: bool = True,
) -> None:
    """decode_runs gives the numpy walk's runs or RLEError, word for word. The C walk gives None
    where the numpy walk raises, else the same runs (or None, unless ``must_answer``: the C walk
    leaves odd inputs, such as float sizes or big-endian arrays, to the numpy walk)."""
    for threshold in thresholds:
        reference = outcome(decode_runs_numpy, data, height, width, threshold)
        assert outcome(decode_runs, data, height, width, threshold) == reference
        if WALK is None:
            continue
        found = c_runs(data, height, width, threshold)
        if isinstance(reference, str):
            assert found is None, reference
        elif found is not None or must_answer:
            assert found == reference, threshold


def ls_rle(alpha: Alpha) -> list[int]:
    """Label Studio's encoding: RGBA with the alpha copied into R, G and B."""
    return [int(b) for b in encode_rle(np.repeat(alpha.reshape(-1), 4))]  # type: ignore[no-untyped-call]


def sdk_words(rle: Sequence[int]) -> npt.NDArray[np.uint8]:
    return np.asarray(decode_rle(rle), dtype=np.uint8)


def pack(bits: str) -> list[int]:
    bits += "0" * (-len(bits) % 8)
    return list(int(bits, 2).to_bytes(len(bits) // 8, "big")) if bits else []


def header(num: int, sizes: Sequence[int] = LS_SIZES, word_size: int = 8) -> str:
    return (
        format(num, "032b")
        + format(word_size - 1, "05b")
        + "".join(format(s - 1, "04b") for s in sizes)
    )


def random_stream(
    rng: np.random.Generator, words: int, sizes: Sequence[int], literal_share: float
) -> list[int]:
    """A valid stream of ``words`` words made of random records: repeat or literal (about
    ``literal_share`` of them), any selector, any count its width allows, values mostly 0, 255
    and near the threshold."""
    values = [0, 0, 255, 255, 127, 128, 1, 254]

    def value() -> int:
        if rng.random() < 0.8:
            return values[rng.integers(0, len(values))]
        return int(rng.integers(256))

    bits = [header(words, sizes)]
    left = words
    while left:
        sel = int(rng.integers(0, 4))
        most = min(1 << sizes[sel], left)
        count = int(min(most, rng.geometric(0.15))) if rng.random() < 0.8 else most
        literal = rng.random() < literal_share
        bits.append(("0" if literal else "1") + format(sel, "02b"))
        bits.append(format(count - 1, f"0{sizes[sel]}b"))
        bits.extend(format(value(), "08b") for _ in range(count if literal else 1))
        left -= count
    return pack("".join(bits))


def strokes(rng: np.random.Generator, height: int, width: int, n: int) -> Alpha:
    """Anti-aliased brush strokes and ellipses (cv2 LINE_AA)."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    scale = max(min(height, width), 2)
    for _ in range(n):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.4:
            axes = (int(rng.integers(1, scale // 3 + 2)), int(rng.integers(1, scale // 3 + 2)))
            cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, 16)
        else:
            points = (np.cumsum(rng.normal(0, scale / 6, (4, 2)), axis=0) + centre).astype(np.int32)
            cv2.polylines(alpha, [points], False, 255, int(rng.integers(1, scale // 8 + 2)), 16)
    return alpha


MASKS: dict[str, Callable[[np.random.Generator, int, int], Alpha]] = {
    "strokes": lambda rng, h, w: strokes(rng, h, w, int(rng.integers(1, 6))),
    "busy": lambda rng, h, w: strokes(rng, h, w, 20),
    "blurred": lambda rng, h, w: np.asarray(
        cv2.GaussianBlur(strokes(rng, h, w, 3), (0, 0), float(rng.uniform(0.5, 4))),
        dtype=np.uint8,
    ),
    "noise": lambda rng, h, w: rng.integers(0, 256, (h, w), dtype=np.uint8),
    "empty": lambda rng, h, w: np.zeros((h, w), dtype=np.uint8),
    "full": lambda rng, h, w: np.full((h, w), 255, dtype=np.uint8),
}
SIZES = [(1, 1), (1, 2), (1, 97), (83, 1), (2, 2), (3, 5), (31, 17), (64, 64), (120, 161)]


@lru_cache(maxsize=64)
def base_stream(seed: int) -> tuple[tuple[int, ...], int, int]:
    """Sound streams for the fuzz tests to break: SDK masks and random record streams."""
    rng = np.random.default_rng(seed)
    height, width = SIZES[seed % len(SIZES)]
    if seed % 2:
        sizes = tuple(int(s) for s in rng.integers(1, 17, 4))
        stream = random_stream(rng, height * width * 4, sizes, float(rng.uniform(0, 1)))
    else:
        stream = ls_rle(MASKS[sorted(MASKS)[seed // 2 % len(MASKS)]](rng, height, width))
    return tuple(stream), height, width


# --- valid streams: C == numpy == the SDK ------------------------------------------------------


@needs_c
@pytest.mark.parametrize("kind", sorted(MASKS))
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_sdk_encoded_masks(kind: str, height: int, width: int) -> None:
    rng = np.random.default_rng([height, width, len(kind)])
    alpha = MASKS[kind](rng, height, width)
    rle = ls_rle(alpha)
    assert_c_agrees(rle, height, width, THRESHOLDS)
    for threshold in (1, 128, 255):  # and the pixels themselves
        starts, stops = decode_runs(rle, height, width, threshold)
        mask = np.zeros(height * width, dtype=bool)
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            mask[start:stop] = True
        assert np.array_equal(mask, alpha.reshape(-1) >= threshold)


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_rgba_unlike_alpha_gives_one_word_literal_records(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = SIZES[3 + seed % 6]
    alpha = strokes(rng, height, width, 4)
    noise = rng.integers(0, 256, (height, width), dtype=np.uint8)
    rgba = np.stack([alpha // 2, 255 - alpha, noise, alpha], axis=-1)
    rle = [int(b) for b in encode_rle(rgba.reshape(-1))]  # type: ignore[no-untyped-call]
    assert_c_agrees(rle, height, width, THRESHOLDS)


@needs_c
@pytest.mark.parametrize("literal_share", [0.0, 0.3, 0.9, 1.0])
@pytest.mark.parametrize(
    "sizes", [LS_SIZES, (1, 1, 1, 1), (1, 2, 3, 4), (16, 16, 16, 16), (2, 5, 9, 13), (8, 1, 16, 3)]
)
def test_random_record_streams(sizes: tuple[int, ...], literal_share: float) -> None:
    rng = np.random.default_rng([*sizes, int(literal_share * 10)])
    for height, width in SIZES:
        rle = random_stream(rng, height * width * 4, sizes, literal_share)
        alpha = sdk_words(rle).reshape(-1, 4)[:, 3]
        assert alpha.size == height * width
        assert_c_agrees(rle, height, width, (0, 1, 128, 255))
        starts, stops = decode_runs(rle, height, width)
        mask = np.zeros(height * width, dtype=bool)
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            mask[start:stop] = True
        assert np.array_equal(mask, alpha >= 128)


@needs_c
def test_full_hd_busy_mask() -> None:
    rng = np.random.default_rng(1080)
    rle = ls_rle(strokes(rng, 1080, 1920, 20))
    assert_c_agrees(rle, 1080, 1920, (1, 128, 255))
    assert_c_agrees(np.array(rle, dtype=np.int64), 1080, 1920)


@needs_c
def test_the_largest_image_a_32_bit_word_count_allows() -> None:
    """1 x (2^30 - 1) pixels: 2^32 - 4 words in 65,536 repeat records, decoded as runs."""
    width = (1 << 30) - 1
    full, last = "1" + "11" + format(65535, "016b"), "1" + "11" + format(65531, "016b")
    stripes = [format(255 if i % 3 else 0, "08b") for i in range(65536)]
    records = [full + stripe for stripe in stripes[:-1]] + [last + stripes[-1]]
    rle = pack(header(4 * width) + "".join(records))
    found = c_runs(rle, 1, width, 128)
    assert found is not None
    starts, stops = found
    # records of 16,384 pixels: 0 (background), 255, 255, 0, 255, 255, ..., 0 (the last)
    assert starts[0] == 16384 and stops[-1] == 65535 * 16384
    assert len(starts) == 21845
    assert found == outcome(decode_runs_numpy, rle, 1, width)


@needs_c
@pytest.mark.parametrize(
    ("height", "width"),
    [(65536, 65536), (1 << 15, 1 << 15), (1, 1 << 30), (1 << 40, 1), (1, 1 << 70), (3, -1)],
)
def test_sizes_past_32_bits_are_refused_without_reading(height: int, width: int) -> None:
    rle = pack(header(0xFFFFFFFC) + ("1" + "11" + "1" * 16 + "1" * 8) * 4)
    assert c_runs(rle, height, width, 128) is None
    assert c_runs(b"", height, width, 128) is None
    assert_c_agrees(rle, height, width)


@needs_c
def test_a_header_for_the_largest_image_with_a_short_stream_is_refused() -> None:
    rle = pack(header(0xFFFFFFFC) + ("1" + "11" + "1" * 16 + "1" * 8) * 40)
    assert c_runs(rle, 1, (1 << 30) - 1, 128) is None
    with pytest.raises(RLEError, match="RLE truncated"):
        decode_runs(rle, 1, (1 << 30) - 1)


@needs_c
def test_trailing_bytes_after_the_last_record_are_ignored() -> None:
    rng = np.random.default_rng(5)
    rle = ls_rle(strokes(rng, 30, 40, 3))
    found = c_runs(rle + [255] * 20, 30, 40, 128)
    assert found is not None and found == c_runs(rle, 30, 40, 128)
    assert_c_agrees(rle + [255] * 20, 30, 40)


# --- input forms -------------------------------------------------------------------------------


@needs_c
def test_every_input_form_gives_the_same_runs() -> None:
    rng = np.random.default_rng(8)
    rle = ls_rle(strokes(rng, 50, 70, 4))
    expected = c_runs(rle, 50, 70, 128)
    assert expected is not None and expected == outcome(decode_runs_numpy, rle, 50, 70)
    forms: list[object] = [tuple(rle), bytes(rle), bytearray(rle), memoryview(bytes(rle))]
    forms += [np.array(rle, dtype=dtype) for dtype in ("u1", "<u2", "i2", "u4", "i4")]
    forms += [np.array(rle, dtype=dtype) for dtype in ("u8", "i8", "=i8", np.intp, np.uint)]
    forms.append(np.array(rle * 2, dtype=np.int64)[: len(rle)])  # a contiguous slice
    forms.append([bool(b) if b in (0, 1) else b for b in rle])  # bools are ints 0 and 1
    for form in forms:
        assert c_runs(form, 50, 70, 128) == expected, form
        assert_c_agrees(form, 50, 70)


@needs_c
def test_sizes_and_thresholds_of_any_integer_type() -> None:
    rle = ls_rle(np.array([[0, 1, 127], [128, 255, 200]], dtype=np.uint8))
    assert c_runs(rle, np.int64(2), np.uint16(3), np.int8(-1)) == ([0], [6])
    assert c_runs(rle, 2, 3, True) == ([1], [6])
    assert c_runs(rle, 2, 3, 128) == ([3], [6])
    assert c_runs(rle, 2, 3, 256) == ([], [])
    assert c_runs(rle, 2, 3, 1 << 62) == ([], [])
    assert c_runs(rle, 2, 3, -(1 << 62)) == ([0], [6])
    for height, width, threshold in [(2.0, 3, 128), (2, 3, 128.0), (2, 3, 1 << 64), (2, "3", 1)]:
        assert c_runs(rle, height, width, threshold) is None  # the numpy walk's business
    assert_c_agrees(rle, 2.0, 3, must_answer=False)
    assert_c_agrees(rle, 2, 3, (127.5,), must_answer=False)


@needs_c
def test_inputs_the_c_walk_leaves_to_the_numpy_walk() -> None:
    rle = ls_rle(np.full((4, 4), 200, dtype=np.uint8))
    refused: list[object] = [
        np.array(rle, dtype=">i8"),  # not native byte order
        np.array(rle * 2, dtype=np.uint8)[::2],  # not contiguous
        np.array(rle, dtype=np.uint8).reshape(1, -1),  # not 1-D
        np.array(rle, dtype=np.float64),
        np.array(rle, dtype=object),
        np.array(rle, dtype=bool),
        np.array(rle, dtype=np.int64).astype(np.int8),  # 128..255 wrap to negative values
        np.array([*rle[:-1], 256], dtype=np.int64),
        np.array([*rle[:-1], -1], dtype=np.int16),
        np.array([*rle[:-1], 1 << 63], dtype=np.uint64),
        [*rle[:-1], 256],
        [*rle[:-1], -1],
        [*rle[:-1], 1 << 100],
        [*rle[:-1], np.int64(5)],
        [*rle[:-1], 5.0],
        [*rle[:-1], None],
        "AAAAAAAAAAAA",
        None,
        7,
        {0: 1},
        [],
        b"",
        bytes(rle[:6]),
    ]
    for data in refused:
        assert c_runs(data, 4, 4, 128) is None, data
        assert_c_agrees(data, 4, 4, must_answer=False)
    with pytest.raises(TypeError):
        WALK.runs(rle, 4, 4)  # type: ignore[union-attr]


@needs_c
def test_outputs_are_writable_native_int64_arrays() -> None:
    rng = np.random.default_rng(2)
    rle = ls_rle(strokes(rng, 40, 40, 3))
    assert rle_module.DECODER == "C"
    starts, stops = decode_runs(rle, 40, 40)
    assert starts.dtype == np.dtype(np.int64) and starts.flags.writeable and stops.flags.writeable
    starts += 0  # the numpy walk's arrays could be changed in place, so can these


@needs_c
def test_threads_decode_at_once() -> None:
    """The walk runs without the GIL; threads sharing streams must all get the right runs."""
    rng = np.random.default_rng(4)
    rles = [ls_rle(strokes(rng, 300, 400, 10)) for _ in range(4)]
    forms: list[object] = [rles[0], bytes(rles[1]), np.array(rles[2], dtype=np.uint8)]
    forms.append(np.array(rles[3], dtype=np.int64))
    expected = [c_runs(form, 300, 400, 128) for form in forms]
    failures: list[str] = []

    def work(index: int) -> None:
        for _ in range(20):
            if c_runs(forms[index % 4], 300, 400, 128) != expected[index % 4]:
                failures.append(f"thread {index}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


# --- broken streams ----------------------------------------------------------------------------


@needs_c
@pytest.mark.parametrize(
    "bits",
    [
        header(16, word_size=16) + "1" + "00" + "111" + "0" * 16,  # word size 16
        header(12) + "1" + "01" + "1111" + "11111111",  # a record past the image
        header(4) + "0" + "00" + "100" + "00000001" * 5,  # a literal record past the image
        header(8) + "0" + "00" + "111" + "00000001" * 3,  # a literal record cut short
        header(8) + "1" + "00" + "011" + "11111111",  # 4 of 8 words, then nothing
        header(0),
        header(16)[:50],
    ],
)
def test_broken_streams_are_left_to_the_numpy_walk(bits: str) -> None:
    rle = pack(bits)
    height, width = 1, max(1, int(bits[:32] or "0", 2) // 4)
    assert c_runs(rle, height, width, 128) is None
    assert isinstance(outcome(decode_runs_numpy, rle, height, width), str)
    assert_c_agrees(rle, height, width)


@needs_c
@pytest.mark.parametrize("seed", range(12))
def test_every_truncation_is_refused(seed: int) -> None:
    rle, height, width = base_stream(seed)
    data = memoryview(bytes(rle))
    last = len(rle) - 1
    while last >= 7 and c_runs(data[:last], height, width, 128) is not None:
        last -= 1  # the last byte(s) may be padding only
    # every cut in the first and last 100 bytes, 100 cuts in between (a cut stream stays cut)
    cuts = {*range(min(100, last + 1)), *range(max(0, last - 100), last + 1)}
    cuts.update(range(0, last + 1, max(1, last // 100)))
    for keep in sorted(cuts):
        assert c_runs(data[:keep], height, width, 128) is None, keep
    for keep in range(0, len(rle) + 1, max(1, len(rle) // 25)):
        assert_c_agrees(list(rle[:keep]), height, width)


FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def broken_streams(draw: st.DrawFn) -> tuple[list[int], int, int]:
    """A sound stream, then bytes overwritten, bits flipped, bytes deleted or inserted, cut or
    extended; or random bytes behind a header that fits the size."""
    stream, height, width = base_stream(draw(st.integers(0, 63)))
    data = list(stream)
    if draw(st.integers(0, 4)) == 0:
        sizes = draw(st.lists(st.integers(1, 16), min_size=4, max_size=4))
        data = [*pack(header(height * width * 4, sizes)), *draw(st.binary(max_size=300))]
        return data, height, width
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["set", "flip", "delete", "insert", "cut", "extend"]))
        if action == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete" and data:
            del data[at]
        elif action == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif action == "cut":
            data = data[:at]
        else:
            data += list(draw(st.binary(max_size=16)))
    return data, height, width


@needs_c
@FUZZ
@given(case=broken_streams(), threshold=st.sampled_from([0, 1, 128, 255, 256]))
def test_broken_streams_give_none_or_the_numpy_runs(
    case: tuple[list[int], int, int], threshold: int
) -> None:
    data, height, width = case
    assert_c_agrees(data, height, width, (threshold,))
    assert_c_agrees(bytes(data), height, width, (threshold,))


@needs_c
@FUZZ
@given(
    data=st.binary(max_size=200),
    height=st.integers(-2, 40),
    width=st.integers(-2, 40),
)
def test_random_bytes_never_crash(data: bytes, height: int, width: int) -> None:
    assert_c_agrees(data, height, width)
    assert_c_agrees(np.frombuffer(data, dtype=np.uint8), height, width, (1,))

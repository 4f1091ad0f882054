"""ls_panoptic.rle against label-studio-sdk's reference encoder and decoder.

Every stream is checked against ``label_studio_sdk.converter.brush.decode_rle``: decode_runs must
give exactly the pixels whose SDK alpha passes the threshold, decode_alpha the SDK alpha plane.
decode_runs takes the C walk when ls_panoptic._rlewalk is built, so decode_runs_numpy (the numpy
walk, its fallback) is checked beside it; tests/unit/test_rlewalk.py holds the one to the other.
"""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from label_studio_sdk.converter.brush import decode_rle, encode_rle

from ls_panoptic import rle as rle_module
from ls_panoptic.errors import RLEError
from ls_panoptic.rle import decode_alpha, decode_runs, decode_runs_numpy, paint_runs, runs_area

Alpha = npt.NDArray[np.uint8]
THRESHOLDS = (1, 128, 255)
DECODERS = (decode_runs, decode_runs_numpy)  # the C walk if built, else numpy; the numpy walk


# --- helpers -----------------------------------------------------------------------------------


def ls_rle(alpha: Alpha) -> list[int]:
    """Encode an alpha plane as Label Studio does: RGBA with the alpha copied into R, G and B."""
    return [int(b) for b in encode_rle(np.repeat(alpha.reshape(-1), 4))]  # type: ignore[no-untyped-call]


def sdk_alpha(rle: Sequence[int], height: int, width: int) -> Alpha:
    """The reference: label-studio-sdk's decoder, alpha plane as users take it."""
    return np.asarray(decode_rle(rle).reshape(height, width, 4)[:, :, 3], dtype=np.uint8)


def runs_mask(
    starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64], size: int
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(size, dtype=bool)
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        mask[start:stop] = True
    return mask


def assert_runs_well_formed(
    starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64], size: int
) -> None:
    assert starts.dtype == np.int64 and stops.dtype == np.int64
    assert starts.shape == stops.shape and starts.ndim == 1
    assert (starts < stops).all(), "runs must be non-empty"
    assert (stops[:-1] < starts[1:]).all(), "runs must be sorted, disjoint, and merged"
    if starts.size:
        assert starts[0] >= 0 and stops[-1] <= size


def assert_matches_sdk(rle: Sequence[int] | bytes, height: int, width: int) -> None:
    reference = sdk_alpha(rle, height, width)
    assert np.array_equal(decode_alpha(rle, height, width), reference)
    for threshold, decode in itertools.product(THRESHOLDS, DECODERS):
        starts, stops = decode(rle, height, width, threshold)
        assert_runs_well_formed(starts, stops, height * width)
        expected = reference.reshape(-1) >= threshold
        assert np.array_equal(runs_mask(starts, stops, height * width), expected), threshold


def encode_words(
    words: npt.NDArray[np.uint8], sizes: Sequence[int], rng: np.random.Generator
) -> list[int]:
    """A second encoder that writes what the SDK never does: literal records of many words, and
    any rle_sizes. Runs of one word go into literal records, longer runs into repeat records
    (sometimes into literal records too)."""
    bits = [format(words.size, "032b"), format(7, "05b"), *(format(s - 1, "04b") for s in sizes)]
    edges = np.flatnonzero(np.diff(words.astype(np.int16))) + 1
    bounds = [0, *edges.tolist(), words.size]
    pending: list[int] = []  # words waiting for a literal record

    def record(flag: str, length: int, payload: list[int]) -> None:
        sel = next(i for i, s in enumerate(sizes) if length <= 1 << s)
        bits.append(flag + format(sel, "02b") + format(length - 1, f"0{sizes[sel]}b"))
        bits.extend(format(w, "08b") for w in payload)

    def flush() -> None:
        limit = 1 << max(sizes)
        for i in range(0, len(pending), limit):
            chunk = pending[i : i + limit]
            record("0", len(chunk), chunk)
        pending.clear()

    for start, stop in pairwise(bounds):
        length, word = stop - start, int(words[start])
        if length == 1 or (length < 6 and rng.random() < 0.3):
            pending.extend([word] * length)
            continue
        flush()
        for i in range(0, length, 1 << max(sizes)):
            record("1", min(length - i, 1 << max(sizes)), [word])
    flush()
    text = "".join(bits)
    text += "0" * (-len(text) % 8)
    return [int(text[i : i + 8], 2) for i in range(0, len(text), 8)]


def rle_from_pixel_runs(runs: Sequence[tuple[int, int]]) -> list[int]:
    """A Label Studio stream straight from (alpha, pixel count) runs, as the SDK would write it
    (repeat records of at most 65,536 words), without building the RGBA words."""
    total = 4 * sum(count for _, count in runs)
    bits = [_header(total)]
    for value, count in runs:
        for first in range(0, 4 * count, 65536):
            length = min(65536, 4 * count - first)
            sel, width = next((i, s) for i, s in enumerate((3, 4, 8, 16)) if length <= 1 << s)
            bits.append("1" + format(sel, "02b") + format(length - 1, f"0{width}b"))
            bits.append(format(value, "08b"))
    return _pack("".join(bits))


def _header(num: int, word_size: int = 8, sizes: Sequence[int] = (3, 4, 8, 16)) -> str:
    return (
        format(num, "032b")
        + format(word_size - 1, "05b")
        + "".join(format(s - 1, "04b") for s in sizes)
    )


def _pack(bits: str) -> list[int]:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


# --- masks -------------------------------------------------------------------------------------


def blobs(rng: np.random.Generator, height: int, width: int) -> Alpha:
    """Anti-aliased brush-like strokes and ellipses (cv2 LINE_AA), 1 to 5 of them."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    scale = min(height, width)
    for _ in range(int(rng.integers(1, 6))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            axes = (int(rng.integers(1, scale // 3 + 2)), int(rng.integers(1, scale // 3 + 2)))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(alpha, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
        else:
            steps = rng.normal(0, scale / 6, (int(rng.integers(2, 6)), 2))
            points = (np.cumsum(steps, axis=0) + centre).astype(np.int32)
            thickness = int(rng.integers(1, scale // 8 + 2))
            cv2.polylines(alpha, [points], False, 255, thickness, cv2.LINE_AA)
    return alpha


def blurred(rng: np.random.Generator, height: int, width: int) -> Alpha:
    """Gaussian-blurred rectangles: wide soft edges with every alpha value."""
    alpha = np.zeros((height, width), dtype=np.uint8)
    for _ in range(3):
        top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
        alpha[top : top + height // 3, left : left + width // 3] = 255
    return np.asarray(cv2.GaussianBlur(alpha, (0, 0), float(rng.uniform(0.5, 4))), dtype=np.uint8)


def noise(rng: np.random.Generator, height: int, width: int) -> Alpha:
    return rng.integers(0, 256, (height, width), dtype=np.uint8)


def sparse_noise(rng: np.random.Generator, height: int, width: int) -> Alpha:
    return np.where(rng.random((height, width)) < 0.05, 255, 0).astype(np.uint8)


MAKERS: dict[str, Callable[[np.random.Generator, int, int], Alpha]] = {
    "blobs": blobs,
    "blurred": blurred,
    "noise": noise,
    "sparse_noise": sparse_noise,
}
SIZES = [(1, 1), (1, 7), (5, 1), (3, 3), (17, 23), (37, 53), (64, 64), (101, 97), (240, 321)]


# --- decoding Label Studio masks ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("seed", range(6))
def test_random_masks_match_the_sdk(kind: str, seed: int) -> None:
    rng = np.random.default_rng([seed, len(kind)])
    height, width = SIZES[int(rng.integers(0, len(SIZES)))]
    alpha = MAKERS[kind](rng, height, width)
    rle = ls_rle(alpha)
    assert np.array_equal(sdk_alpha(rle, height, width), alpha)  # the reference agrees with itself
    assert_matches_sdk(rle, height, width)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_every_size_with_widths_not_a_multiple_of_4(height: int, width: int) -> None:
    rng = np.random.default_rng(height * 1000 + width)
    assert_matches_sdk(ls_rle(blobs(rng, height, width)), height, width)
    assert_matches_sdk(ls_rle(noise(rng, height, width)), height, width)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 254, 255])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (128, 200), (300, 301)])
def test_uniform_masks_including_runs_longer_than_65536_words(
    value: int, height: int, width: int
) -> None:
    alpha = np.full((height, width), value, dtype=np.uint8)
    rle = ls_rle(alpha)
    assert_matches_sdk(rle, height, width)
    starts, stops = decode_runs(rle, height, width)
    expected = [(0, height * width)] if value >= 128 else []
    assert list(zip(starts.tolist(), stops.tolist(), strict=True)) == expected


def test_one_long_run_across_many_capped_records() -> None:
    height, width = 300, 400  # 480,000 words: the background takes 7 records of 65,536 words
    alpha = np.zeros((height, width), dtype=np.uint8)
    alpha[150, 7] = 200
    rle = ls_rle(alpha)
    assert_matches_sdk(rle, height, width)
    starts, stops = decode_runs(rle, height, width)
    assert starts.tolist() == [150 * width + 7] and stops.tolist() == [150 * width + 8]


def test_full_hd_brush_mask() -> None:
    rng = np.random.default_rng(1080)
    alpha: Alpha = np.zeros((1080, 1920), dtype=np.uint8)
    for _ in range(4):
        np.maximum(alpha, blobs(rng, 1080, 1920), out=alpha)
    assert_matches_sdk(ls_rle(alpha), 1080, 1920)


def test_threshold_is_inclusive_and_zero_takes_everything() -> None:
    alpha = np.array([[0, 1, 127, 128, 129, 255]], dtype=np.uint8)
    rle = ls_rle(alpha)
    assert [a.tolist() for a in decode_runs(rle, 1, 6, 128)] == [[3], [6]]
    assert [a.tolist() for a in decode_runs(rle, 1, 6, 1)] == [[1], [6]]
    assert [a.tolist() for a in decode_runs(rle, 1, 6, 0)] == [[0], [6]]
    assert [a.tolist() for a in decode_runs(rle, 1, 6, 256)] == [[], []]


def test_input_types_give_the_same_runs() -> None:
    rng = np.random.default_rng(3)
    alpha = blobs(rng, 50, 70)
    rle = ls_rle(alpha)
    expected = decode_runs_numpy(rle, 50, 70)
    for form, decode in itertools.product(
        (
            rle,
            bytes(rle),
            bytearray(rle),
            tuple(rle),
            memoryview(bytes(rle)),
            np.array(rle, dtype=np.uint8),
            np.array(rle, dtype=np.int64),
            np.array(rle, dtype=">i4"),
        ),
        DECODERS,
    ):
        got = decode(form, 50, 70)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


# --- literal records, other rle_sizes, table chunking ------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_rgb_different_from_alpha_gives_literal_records(seed: int) -> None:
    """RGBA masks whose colour differs from alpha: the SDK then writes one-word literal records."""
    rng = np.random.default_rng(seed)
    height, width = SIZES[seed % len(SIZES)]
    alpha = blobs(rng, height, width)
    rgba = np.stack([alpha // 2, 255 - alpha, noise(rng, height, width), alpha], axis=-1)
    rle = [int(b) for b in encode_rle(rgba.reshape(-1))]  # type: ignore[no-untyped-call]
    assert_matches_sdk(rle, height, width)
    assert np.array_equal(decode_alpha(rle, height, width), alpha)


@pytest.mark.parametrize(
    "sizes", [(3, 4, 8, 16), (1, 2, 3, 4), (16, 16, 16, 16), (2, 5, 9, 13), (8, 1, 16, 3)]
)
@pytest.mark.parametrize("seed", range(4))
def test_multi_word_literal_records_and_other_rle_sizes(sizes: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng([seed, *sizes])
    height, width = SIZES[3 + seed]
    rgba = np.repeat(MAKERS[sorted(MAKERS)[seed]](rng, height, width).reshape(-1), 4)
    rgba[rng.random(rgba.size) < 0.1] = 7  # break some pixels' words apart: literal records
    rle = encode_words(rgba, sizes, rng)
    assert np.array_equal(decode_rle(rle), rgba)  # the second encoder is right
    assert_matches_sdk(rle, height, width)


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7, 64])
def test_next_record_tables_split_anywhere(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    monkeypatch.setattr(rle_module, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(chunk_bytes)
    for height, width in [(37, 53), (101, 97)]:
        assert_matches_sdk(ls_rle(blobs(rng, height, width)), height, width)
        words = np.repeat(noise(rng, height, width).reshape(-1), 4)
        words[rng.random(words.size) < 0.2] = 0
        assert_matches_sdk(encode_words(words, (3, 4, 8, 16), rng), height, width)


def test_12_megapixel_mask_decodes_without_image_sized_memory() -> None:
    height, width = 3000, 4000
    runs = [(0, 1000 * width)]
    for row in range(1000, 2000):  # an ellipse 2000 x 1000, one soft pixel at each end of a row
        half = int((1000**2 - (row - 1500) ** 2 * 4) ** 0.5) if abs(row - 1500) < 500 else 10
        runs += [(0, 2000 - half - 1), (90, 1), (255, 2 * half), (200, 1), (0, 2000 - half - 1)]
    runs.append((0, 1000 * width))
    rle = rle_from_pixel_runs(runs)
    expected_area = sum(count for value, count in runs if value >= 128)
    for decode in DECODERS:
        decode(rle, height, width)  # warm the lookup-table caches
        tracemalloc.start()
        starts, stops = decode(rle, height, width)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 4_000_000  # a bool mask of the image alone would be 12 MB, RGBA 48 MB
        assert runs_area(starts, stops) == expected_area and starts.size == 1000


def test_trailing_zero_bytes_after_the_last_record_are_ignored() -> None:
    rng = np.random.default_rng(9)
    rle = ls_rle(blobs(rng, 40, 60))
    assert np.array_equal(decode_alpha(rle + [0] * 9, 40, 60), decode_alpha(rle, 40, 60))


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ([], "RLE is empty"),
        (b"", "RLE is empty"),
        ([0, 0, 0, 16], "RLE truncated: 4 bytes, the header alone needs 7"),
        ([1.5, 2, 3], "RLE item 0 is 1.5, not an int in 0..255"),
        ([0, 0, 300], "RLE item 2 is 300, not an int in 0..255"),
        ([0, -1], "RLE item 1 is -1, not an int in 0..255"),
        ([0, None], "RLE item 1 is None, not an int in 0..255"),
        ("AAAA", "RLE must be a list of ints 0..255, got str"),
        (7, "RLE must be a list of ints 0..255, got int"),
        (None, "RLE must be a list of ints 0..255, got NoneType"),
        ({0: 1}, "RLE must be a list of ints 0..255, got dict"),
        (np.zeros(9), "RLE must be a 1-D integer array, got float64 of shape (9,)"),
        (np.zeros((3, 3), dtype=np.uint8), "RLE must be a 1-D integer array"),
        (np.array([0, 256]), "RLE holds values outside 0..255"),
    ],
)
def test_bad_byte_lists(rle: object, message: str) -> None:
    with pytest.raises(RLEError) as caught:
        decode_runs(rle, 2, 2)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_size_mismatch_names_both_sizes_and_the_implied_one() -> None:
    rle = ls_rle(np.zeros((30, 40), dtype=np.uint8))
    with pytest.raises(RLEError) as caught:
        decode_runs(rle, 31, 40)
    assert str(caught.value) == (
        "RLE holds 4800 words but a 31x40 image needs 4960 (height*width*4): "
        "the RLE is for an image of 1200 pixels, not 1240"
    )


def test_a_huge_num_is_refused_before_anything_is_allocated() -> None:
    rle = _pack(_header(0xFFFFFFFF) + "1" + "11" + "1" * 16 + "0" * 8)
    with pytest.raises(RLEError, match="RLE holds 4294967295 words but a 2x2 image needs 16"):
        decode_runs(rle, 2, 2)
    with pytest.raises(RLEError, match="RLE holds 4294967295 words"):
        decode_alpha(rle, 40000, 40000)


def test_word_size_other_than_8_is_refused() -> None:
    rle = _pack(_header(16, word_size=16) + "1" + "00" + "111" + "0" * 16)
    with pytest.raises(RLEError, match="RLE word size is 16 bits; Label Studio masks use 8"):
        decode_runs(rle, 2, 2)


def test_image_size_must_be_positive() -> None:
    with pytest.raises(RLEError, match="image size must be positive, got height=0 width=5"):
        decode_runs(_pack(_header(0)), 0, 5)


def test_a_record_past_the_image_is_refused() -> None:
    rle = _pack(_header(12) + "1" + "01" + "1111" + "11111111")  # 16 words into an image of 12
    with pytest.raises(
        RLEError, match=r"RLE record at bit 53 holds words 0\.\.15, past the 12 words"
    ):
        decode_runs(rle, 1, 3)


def test_a_literal_record_past_the_image_is_refused() -> None:
    rle = _pack(_header(4) + "0" + "00" + "100" + "00000001" * 5)  # 5 literal words, 4 wanted
    with pytest.raises(RLEError, match=r"holds words 0\.\.4, past the 4 words"):
        decode_runs(rle, 1, 1)


@pytest.mark.parametrize("cut", [0.0, 0.01, 0.1, 0.5, 0.9, 1.0])
def test_truncated_streams_are_refused(cut: float) -> None:
    rng = np.random.default_rng(int(cut * 100))
    rle = ls_rle(blobs(rng, 60, 80))
    # from 7 bytes (the header alone) to all but 2 (the last byte may be only padding)
    keep = 7 + int(cut * (len(rle) - 9))
    with pytest.raises(RLEError, match="RLE truncated"):
        decode_runs(rle[:keep], 60, 80)


def test_a_literal_record_cut_short_is_refused() -> None:
    rle = _pack(_header(8) + "0" + "00" + "111" + "00000001" * 3)  # says 8 words, holds 3
    with pytest.raises(RLEError, match="RLE truncated"):
        decode_runs(rle, 1, 2)


@pytest.mark.parametrize("seed", range(40))
def test_corrupt_streams_raise_rle_errors_or_decode(seed: int) -> None:
    """Flipped bits, deleted bytes, random tails: an RLEError, or the SDK's pixels exactly."""
    rng = np.random.default_rng(seed)
    height, width = 40, 50
    rle = ls_rle(MAKERS[sorted(MAKERS)[seed % 4]](rng, height, width))
    data = np.array(rle, dtype=np.uint8)
    body = np.arange(7, data.size)
    if seed % 3 == 0:
        data[rng.choice(body, 1 + seed % 2)] ^= np.uint8(1 << int(rng.integers(0, 8)))
    elif seed % 3 == 1:
        data = np.concatenate(
            [data[:7], rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8)]
        )
    else:
        data = np.delete(data, rng.choice(body, 2))
    try:
        starts, stops = decode_runs(data.tolist(), height, width)
    except RLEError:
        return
    assert_runs_well_formed(starts, stops, height * width)
    assert np.array_equal(
        runs_mask(starts, stops, height * width),
        sdk_alpha(data.tolist(), height, width).reshape(-1) >= 128,
    )


# --- painting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int64])
def test_paint_runs_sets_exactly_the_run_pixels(dtype: type[np.integer[Any]]) -> None:
    rng = np.random.default_rng(11)
    height, width = 120, 170
    alpha = blobs(rng, height, width)
    starts, stops = decode_runs(ls_rle(alpha), height, width)
    canvas = np.full((height, width), 3, dtype=dtype)
    paint_runs(canvas.reshape(-1), starts, stops, 200)
    expected = np.where(alpha >= 128, 200, 3).astype(dtype)
    assert np.array_equal(canvas, expected)
    assert runs_area(starts, stops) == int((alpha >= 128).sum())


def test_paint_runs_with_short_and_long_runs_and_nothing() -> None:
    flat = np.zeros(1000, dtype=np.uint32)
    starts = np.array([0, 5, 10, 200, 999], dtype=np.int64)
    stops = np.array([1, 7, 150, 900, 1000], dtype=np.int64)
    paint_runs(flat, starts, stops, 42)
    assert np.array_equal(
        np.flatnonzero(flat),
        np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)]),
    )
    assert runs_area(starts, stops) == 1 + 2 + 140 + 700 + 1
    paint_runs(flat, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 7)
    assert set(np.unique(flat).tolist()) == {0, 42}
    assert runs_area(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)) == 0


def test_paint_runs_refuses_runs_off_the_canvas_and_2d_canvases() -> None:
    flat = np.zeros(10, dtype=np.uint32)
    with pytest.raises(ValueError, match="outside the canvas of 10 pixels"):
        paint_runs(flat, np.array([5]), np.array([11]), 1)
    with pytest.raises(ValueError, match="1-D view"):
        paint_runs(flat.reshape(2, 5), np.array([0]), np.array([1]), 1)
    assert not flat.any()

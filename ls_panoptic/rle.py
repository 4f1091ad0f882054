"""Label Studio brush RLE, decoded straight to runs of pixels.

Glossary: the stream of Label Studio's brush tool and of ``label_studio_sdk``'s ``encode_rle``.
``rle`` is a list of bytes, read as bits, most significant first::

    header   num            32 bits   words in the stream: height * width * 4 (RGBA, row-major)
             word_size - 1   5 bits   8 in every Label Studio mask, the only size accepted here
             rle_sizes - 1   4 x 4    bit widths of the four count fields, usually 3, 4, 8, 16
    record   flag            1 bit    1: repeat record, 0: literal record
             selector        2 bits   which rle_sizes entry the count field uses
             count           rle_sizes[selector] bits; the record holds count + 1 words
             repeat          one word, used count + 1 times
             literal         count + 1 words, one after the other
    padding  zero bits after the record that completes num words

A pixel is the words 4p .. 4p+3 (R, G, B, A). Label Studio writes the same value into all four;
the mask is the alpha word 4p+3, as in ``decode_rle(rle).reshape(h, w, 4)[:, :, 3]``.

Runs: ``(starts, stops)``, int64 flat pixel indices ``row * width + col``, sorted, non-overlapping,
adjacent runs merged; run ``i`` covers ``flat[starts[i]:stops[i]]``.

How: a record's length is in its own header, so finding the records is sequential. The C
extension ``ls_panoptic._rlewalk`` (built by ``pip install`` where a C compiler exists) walks the
records one by one and writes the runs directly; :data:`DECODER` says whether it is in use. It
answers only for valid streams: for anything else, or without the extension, the numpy walk
(:func:`decode_runs_numpy`, also the tests' reference) decodes or raises the RLEError. The numpy
walk tabulates for every bit position (one lookup per byte) where a record starting there would
end, follows that table at C speed, two records a step, and vectorises the rest over records.
Neither allocates anything of the image's size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from contextlib import suppress
from functools import lru_cache
from itertools import repeat
from operator import getitem
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ls_panoptic.errors import RLEError

__all__ = ["DECODER", "decode_alpha", "decode_runs", "decode_runs_numpy", "paint_runs", "runs_area"]

RLEData = Sequence[int] | bytes | NDArray[np.integer[Any]]
Int64s = NDArray[np.int64]
Int32s = NDArray[np.int32]
Sizes = tuple[int, int, int, int]

HEADER_BITS = 53
WORD_BITS = 8
CHUNK_BYTES = 1 << 15  # stream bytes per next-record table: bounds memory on huge streams
LITERAL_MARK = 1 << 30  # next-record table entries from here on: a literal record starts here
LONG_RUN = 64  # paint_runs paints runs at least this long as slices, shorter ones by index

_Walk = Callable[[object, int, int, int], tuple[bytearray, bytearray] | None]


def _native_walk() -> _Walk | None:
    """``ls_panoptic._rlewalk.runs``, or None when the extension was not built."""
    try:
        from ls_panoptic._rlewalk import runs
    except ImportError:  # installed without a C compiler
        return None
    return runs


_walk = _native_walk()
#: the record walk :func:`decode_runs` uses: "C" (ls_panoptic._rlewalk) or "numpy"
DECODER = "numpy" if _walk is None else "C"
# what the C walk reads as the numpy walk does (a memoryview, say, goes the numpy way)
_WALK_INPUTS = frozenset({list, tuple, bytes, bytearray, np.ndarray})


class _Records(NamedTuple):
    """Record headers, each an array of shape (n,)."""

    pos: Int64s  # bit position of the record
    repeat: NDArray[np.bool_]  # repeat (True) or literal record
    selector: Int64s  # the rle_sizes entry that is the count's width
    words: Int64s  # count + 1
    value: Int64s  # the repeated word (meaningless for literal records)


def _as_bytes(rle: RLEData) -> NDArray[np.uint8]:
    """The stream as uint8 of shape (n + 8,): 8 zero bytes appended so that 64-bit reads fit."""
    if isinstance(rle, np.ndarray):
        if rle.ndim != 1 or rle.dtype.kind not in "iu":
            raise RLEError(f"RLE must be a 1-D integer array, got {rle.dtype} of shape {rle.shape}")
        if rle.size and (int(rle.min()) < 0 or int(rle.max()) > 255):
            raise RLEError("RLE holds values outside 0..255")
        data = bytearray(rle.astype(np.uint8).tobytes())
    elif isinstance(rle, str) or not isinstance(rle, (Sequence, memoryview)):
        raise RLEError(f"RLE must be a list of ints 0..255, got {type(rle).__name__}")
    else:
        try:
            data = bytearray(rle)  # twice as fast as bytes() on a list
        except (TypeError, ValueError):
            raise RLEError(_bad_item(rle)) from None
    if not data:
        raise RLEError("RLE is empty")
    data.extend(bytes(8))
    return np.frombuffer(data, dtype=np.uint8)


def _bad_item(rle: Sequence[Any]) -> str:
    """Name the first item of ``rle`` that is not an int in 0..255."""
    for i, item in enumerate(rle):
        if not isinstance(item, (int, np.integer)) or not 0 <= item <= 255:
            return f"RLE item {i} is {item!r}, not an int in 0..255"
    return "RLE must be a list of ints 0..255"


def _read_header(padded: NDArray[np.uint8], height: int, width: int) -> Sizes:
    """Check the 53-bit header against the image size before anything is allocated; rle_sizes."""
    if padded.size - 8 < 7:
        raise RLEError(f"RLE truncated: {padded.size - 8} bytes, the header alone needs 7")
    header = int.from_bytes(padded[:7].tobytes(), "big")
    num, word_size = header >> 24, ((header >> 19) & 31) + 1
    if word_size != WORD_BITS:
        raise RLEError(f"RLE word size is {word_size} bits; Label Studio masks use 8")
    if height <= 0 or width <= 0:
        raise RLEError(f"image size must be positive, got height={height} width={width}")
    if num != height * width * 4:
        raise RLEError(
            f"RLE holds {num} words but a {height}x{width} image needs {height * width * 4} "
            f"(height*width*4): the RLE is for an image of {num / 4:g} pixels, not {height * width}"
        )
    return tuple(((header >> (15 - 4 * i)) & 15) + 1 for i in range(4))  # type: ignore[return-value]


def _windows(padded: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Big-endian 64-bit reads starting at every byte of the stream, shape (n + 1,); a view."""
    return np.ndarray((padded.size - 7,), dtype=">u8", buffer=padded, strides=(1,))


@lru_cache(maxsize=8)
def _count_fields(sizes: Sizes) -> tuple[Int64s, Int64s]:
    """Per selector, int64 of shape (4,): the right shift that brings the count of a record
    starting at bit 63 down to bit 0, and the count's mask."""
    widths = np.asarray(sizes, dtype=np.int64)
    return 61 - widths, (1 << widths) - 1


def _fields(windows: NDArray[np.uint64], pos: Int64s, sizes: Sizes) -> _Records:
    """Decode the record headers at bit positions ``pos`` (int64, shape (n,))."""
    top = windows[pos >> 3].astype(np.int64)
    top <<= pos & 7  # the record's first bit at bit 63
    selector = top >> 61
    selector &= 3
    count_shift, count_mask = _count_fields(sizes)
    shift = count_shift.take(selector)
    words = top >> shift
    words &= count_mask.take(selector)
    words += 1
    shift -= WORD_BITS  # the repeated word follows the count
    value = top >> shift
    value &= 0xFF
    return _Records(pos, top < 0, selector, words, value)


@lru_cache(maxsize=8)
def _repeat_lengths(sizes: Sizes) -> Int32s:
    """(1024, 8) int32. Row: 10 bits starting at a byte; column o: the length in bits of a repeat
    record starting at bit o, or ``LITERAL_MARK`` when a literal record starts there."""
    window = np.arange(1024)[:, None]
    head = (window >> (7 - np.arange(8)[None, :])) & 7  # flag and selector
    length = 1 + 2 + np.asarray(sizes)[head & 3] + WORD_BITS
    return np.where(head >= 4, length, LITERAL_MARK).astype(np.int32)


@lru_cache(maxsize=2)
def _counting(size: int) -> Int32s:
    """0, 1, ..., size - 1, int32, read-only and kept: a fresh one would cost page faults."""
    counting = np.arange(size, dtype=np.int32)
    counting.flags.writeable = False
    return counting


def _next_table(padded: NDArray[np.uint8], first: int, last: int, sizes: Sizes) -> Int32s:
    """int32 of shape (8 * (last - first),): for a record at bit i of bytes first..last-1 (counted
    from bit 8 * first), where the next record starts; ``LITERAL_MARK + i`` for a literal record."""
    pairs: NDArray[np.uint16] = np.ndarray(
        (last - first,), dtype=">u2", buffer=padded, offset=first, strides=(1,)
    )
    table = _repeat_lengths(sizes).take(pairs >> 6, axis=0).ravel()
    table += _counting(8 * CHUNK_BYTES)[: table.size]
    return table


def _next_table_exact(padded: NDArray[np.uint8], first: int, last: int, sizes: Sizes) -> Int32s:
    """As :func:`_next_table`, with the true length of literal records too (slower)."""
    pos = np.arange(8 * first, 8 * last, dtype=np.int64)
    rec = _fields(_windows(padded), pos, sizes)
    data_bits: Int64s = np.where(rec.repeat, WORD_BITS, WORD_BITS * rec.words)
    size: Int64s = np.asarray(sizes, dtype=np.int64).take(rec.selector)
    return (pos - 8 * first + 3 + size + data_bits).astype(np.int32)


def _chase(table: Int32s, start: int) -> list[int]:
    """[start, table[start], table[table[start]], ...] up to the first value past the table."""
    chain = [start]
    # map() reads the list while extend() appends to it (a list iterator is an index, so it sees
    # the new items): a pointer chase that runs in C, at 40 to 80 ns a step.
    with suppress(IndexError):
        chain.extend(map(getitem, repeat(table.data), chain))
    return chain


def _chase_records(table: Int32s, start: int) -> tuple[Int32s, int]:
    """Record starts from ``start`` on (int32, shape (n,)) and the table value after the last:
    a start past the table, or ``LITERAL_MARK + i`` if the last one, i, is a literal record."""
    double = table.take(table, mode="clip")  # two records a step: fewer, costlier Python steps
    chain = _chase(double, start)  # its last value, past the table, still fits in int32
    even = np.frombuffer(struct.pack(f"={len(chain)}i", *chain), dtype=np.int32)[:-1]
    odd = table.take(even)
    found = np.empty(2 * even.size, dtype=np.int32)
    found[0::2], found[1::2] = even, odd
    if odd[-1] < table.size:
        return found, int(table[odd[-1]])
    return found[:-1], int(odd[-1])


def _record_starts(padded: NDArray[np.uint8], sizes: Sizes) -> Int64s:
    """Bit positions of the records after the header, in order, int64 of shape (n,). May go on
    past the record that completes the image, into the padding; the caller cuts."""
    nbits = 8 * (padded.size - 8)
    shortest = 1 + 2 + min(sizes) + WORD_BITS
    parts: list[Int64s] = []
    pos, next_table = HEADER_BITS, _next_table
    while pos < nbits:
        first = pos >> 3
        last = min(first + CHUNK_BYTES, nbits >> 3)
        found, after = _chase_records(next_table(padded, first, last, sizes), pos - 8 * first)
        parts.append(np.add(found, 8 * first, dtype=np.int64))
        pos = 8 * first + after
        if after >= LITERAL_MARK:  # the last position found holds a literal record
            pos = int(parts[-1][-1])
            if pos + shortest > nbits:  # too short for a record: padding
                break
            next_table, parts[-1] = _next_table_exact, parts[-1][:-1]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _records(rle: RLEData, height: int, width: int) -> tuple[_Records, Int64s, Sizes, NDArray[Any]]:
    """The records that make up the image, the index of the word after each (int64, (n,)),
    rle_sizes and the stream's 64-bit windows. Raises :class:`RLEError` (see decode_runs)."""
    padded = _as_bytes(rle)
    sizes = _read_header(padded, height, width)
    windows, num, nbits = _windows(padded), height * width * 4, 8 * (padded.size - 8)
    rec = _fields(windows, _record_starts(padded, sizes), sizes)
    ends = np.cumsum(rec.words)
    k = int(ends.searchsorted(num))  # the record that completes num words
    if k == ends.size:
        raise RLEError(f"RLE truncated: the stream ends after {ends[-1]} of {num} words")
    if ends[k] != num:
        raise RLEError(
            f"RLE record at bit {rec.pos[k]} holds words {ends[k] - rec.words[k]}..{ends[k] - 1}, "
            f"past the {num} words of the image"
        )
    data_bits = WORD_BITS if rec.repeat[k] else WORD_BITS * int(rec.words[k])
    if int(rec.pos[k]) + 3 + sizes[rec.selector[k]] + data_bits > nbits:
        raise RLEError(f"RLE truncated: its last record needs more than the {nbits} bits given")
    return _Records._make(field[: k + 1] for field in rec), ends[: k + 1], sizes, windows


def _literal_pixels(
    rec: _Records, ends: Int64s, sizes: Sizes, windows: NDArray[Any]
) -> tuple[Int64s, Int64s]:
    """The pixels whose alpha word is in a literal record, and their alpha (int64, shape (m,))."""
    lit = ~rec.repeat
    words = rec.words[lit]
    first, data = ends[lit] - words, rec.pos[lit] + 3 + np.asarray(sizes).take(rec.selector[lit])
    skip = (3 - first) % 4  # words before the record's first alpha word (4p + 3)
    count = np.maximum((words - skip + 3) // 4, 0)
    owner = np.repeat(np.arange(count.size), count)
    word = skip[owner] + 4 * (np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count))
    bit = data[owner] + WORD_BITS * word
    alpha = (windows[bit >> 3].astype(np.int64) << (bit & 7)) >> 56 & 0xFF
    return (first[owner] + word) >> 2, alpha


def _pixel_runs(rle: RLEData, height: int, width: int) -> tuple[Int64s, Int64s, Int64s]:
    """(starts, stops, alpha), int64 of shape (n,): runs that cover every pixel once, in order
    (``starts[i + 1] == stops[i]``). Runs may be empty, and neighbours may share a value."""
    rec, ends, sizes, windows = _records(rle, height, width)
    bounds = np.empty(ends.size + 1, dtype=np.int64)
    bounds[0] = 0  # words [a, b) hold the alpha words 4p + 3 of pixels [a // 4, b // 4)
    np.right_shift(ends, 2, out=bounds[1:])
    if rec.repeat.all():
        return bounds[:-1], bounds[1:], rec.value
    pixels, alpha = _literal_pixels(rec, ends, sizes, windows)
    starts = np.concatenate([bounds[:-1][rec.repeat], pixels])
    stops = np.concatenate([bounds[1:][rec.repeat], pixels + 1])
    alpha = np.concatenate([rec.value[rec.repeat], alpha])
    order = np.argsort(starts, kind="stable")
    return starts[order], stops[order], alpha[order]


def decode_runs(
    rle: RLEData, height: int, width: int, threshold: int = 128
) -> tuple[Int64s, Int64s]:
    """Runs of the pixels whose alpha is at least ``threshold``: ``(starts, stops)``.

    Both int64 of shape (n,): flat pixel indices ``row * width + col``, sorted, non-overlapping,
    adjacent runs merged; run ``i`` covers ``flat[starts[i]:stops[i]]``. ``rle`` is the region's
    ``value["rle"]``: a list of ints 0..255, bytes, or a 1-D integer array. Raises
    :class:`RLEError` when the stream is empty, truncated or corrupt, its word size is not 8, or
    it is not ``height`` x ``width``.
    """
    if _walk is not None and type(rle) in _WALK_INPUTS:
        found = _walk(rle, height, width, threshold)
        if found is not None:
            return np.frombuffer(found[0], dtype=np.int64), np.frombuffer(found[1], dtype=np.int64)
    return decode_runs_numpy(rle, height, width, threshold)


def decode_runs_numpy(
    rle: RLEData, height: int, width: int, threshold: int = 128
) -> tuple[Int64s, Int64s]:
    """:func:`decode_runs` by the numpy walk alone: the fallback, and the C walk's reference."""
    starts, stops, alpha = _pixel_runs(rle, height, width)
    full = stops > starts
    if not full.all():  # records that hold no alpha word: without them, kept blocks never touch
        starts, stops, alpha = starts[full], stops[full], alpha[full]
    keep = np.zeros(alpha.size + 2, dtype=np.int8)
    np.greater_equal(alpha, threshold, out=keep[1:-1].view(np.bool_))
    edges = np.flatnonzero(keep[1:] != keep[:-1])  # where blocks of kept runs begin and end
    return starts[edges[0::2]], stops[edges[1::2] - 1]


def decode_alpha(rle: RLEData, height: int, width: int) -> NDArray[np.uint8]:
    """The alpha plane, uint8 of shape (height, width), for previews and tests (it allocates the
    image). Raises :class:`RLEError` like :func:`decode_runs`."""
    starts, stops, alpha = _pixel_runs(rle, height, width)
    return np.repeat(alpha.astype(np.uint8), stops - starts).reshape(height, width)


def paint_runs(flat: NDArray[np.integer[Any]], starts: Int64s, stops: Int64s, value: int) -> None:
    """Set ``flat[starts[i]:stops[i]] = value`` for every run, in place.

    ``flat``: 1-D view of a (height, width) canvas, any integer dtype. ``starts``, ``stops``:
    integer arrays of shape (n,) as :func:`decode_runs` returns them.
    """
    if flat.ndim != 1:
        raise ValueError(f"paint_runs needs a 1-D view of the canvas, got shape {flat.shape}")
    starts, stops = np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)
    if starts.size == 0:
        return
    if int(starts.min()) < 0 or int(stops.max()) > flat.size:
        raise ValueError(f"runs reach outside the canvas of {flat.size} pixels")
    lengths = np.maximum(stops - starts, 0)
    short = lengths < LONG_RUN
    if short.any():  # all pixels of the short runs, set with one index
        first, n = starts[short], lengths[short]
        flat[np.repeat(first - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))] = value
    for start, stop in zip(starts[~short].tolist(), stops[~short].tolist(), strict=True):
        flat[start:stop] = value


def runs_area(starts: Int64s, stops: Int64s) -> int:
    """Number of pixels in the runs (non-overlapping, as :func:`decode_runs` returns them)."""
    return int(np.sum(np.asarray(stops, dtype=np.int64) - np.asarray(starts, dtype=np.int64)))

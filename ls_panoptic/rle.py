"""Label Studio brush RLE, decoded straight to runs of pixels.

Glossary: the stream written by Label Studio's brush tool and by
``label_studio_sdk.converter.brush.encode_rle``. ``rle`` is a list of bytes; bits are read most
significant first, one byte after the other::

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

Speed: a record's length is in its own header, so finding the records is sequential. For every
bit position we tabulate (numpy, one lookup per byte) where a record starting there would end,
then follow that table from the end of the header at C speed; all the rest is vectorised over
records. Nothing of image size is allocated.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from contextlib import suppress
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ls_panoptic.errors import RLEError

__all__ = ["decode_alpha", "decode_runs", "paint_runs", "runs_area"]

HEADER_BITS = 53
WORD_BITS = 8
ALPHA_WORD = 3  # index of the alpha word among a pixel's four
CHUNK_BYTES = 1 << 15  # stream bytes per next-record table: bounds memory on huge streams
LITERAL_MARK = 1 << 30  # table entries at or above: a literal record starts here
LONG_RUN = 64  # paint_runs: runs at least this long are painted as slices

Int64s = NDArray[np.int64]
Sizes = tuple[int, int, int, int]


class _Records(NamedTuple):
    """Per record, int64 arrays of shape (n,): header fields read at bit positions ``pos``."""

    pos: Int64s
    repeat: NDArray[np.bool_]
    size: Int64s  # width of the count field
    words: Int64s  # count + 1
    value: Int64s  # the repeated word (meaningless for literal records)


def _as_bytes(rle: Sequence[int] | bytes | NDArray[np.integer]) -> NDArray[np.uint8]:
    """The stream as a 1-D uint8 array, followed by 8 zero bytes so that 64-bit reads never end early."""
    if isinstance(rle, np.ndarray):
        if rle.ndim != 1 or rle.dtype.kind not in "iu":
            raise RLEError(f"RLE must be a 1-D integer array, got {rle.dtype} of shape {rle.shape}")
        if rle.size and (int(rle.min()) < 0 or int(rle.max()) > 255):
            raise RLEError("RLE holds values outside 0..255")
        data = rle.astype(np.uint8).tobytes()
    elif isinstance(rle, (str, int, dict)):
        raise RLEError(f"RLE must be a list of ints 0..255, got {type(rle).__name__}")
    else:
        try:
            data = bytes(rle)
        except (TypeError, ValueError) as exc:
            raise RLEError(f"RLE must be a list of ints 0..255: {exc}") from None
    if not data:
        raise RLEError("RLE is empty")
    return np.frombuffer(data + bytes(8), dtype=np.uint8)


def _read_header(padded: NDArray[np.uint8], nbytes: int, height: int, width: int) -> Sizes:
    """Check the 53-bit header against the image size; return rle_sizes."""
    if nbytes < 7:
        raise RLEError(f"RLE truncated: {nbytes} bytes, the header alone needs 7")
    header = int.from_bytes(padded[:7].tobytes(), "big")
    num, word_size = header >> 24, ((header >> 19) & 31) + 1
    if word_size != WORD_BITS:
        raise RLEError(f"RLE word size is {word_size} bits; Label Studio masks use 8")
    if height <= 0 or width <= 0:
        raise RLEError(f"image size must be positive, got height={height} width={width}")
    if num != height * width * 4:
        raise RLEError(
            f"RLE holds {num} words but a {height}x{width} image needs {height * width * 4} "
            f"(height*width*4): the RLE is for an image of {num / 4:g} pixels, "
            f"not {height * width}"
        )
    return tuple(((header >> (15 - 4 * i)) & 15) + 1 for i in range(4))  # type: ignore[return-value]


def _fields(windows: NDArray[np.uint64], pos: Int64s, sizes: Int64s) -> _Records:
    """Decode record headers at bit positions ``pos`` (any that lie inside the padded stream)."""
    top = windows[pos >> 3].astype(np.int64) << (pos & 7)  # record start moved to bit 63
    size = sizes[(top >> 61) & 3]
    words = ((top >> (61 - size)) & ((1 << size) - 1)) + 1
    return _Records(pos, top < 0, size, words, (top >> (53 - size)) & 0xFF)


@lru_cache(maxsize=8)
def _repeat_table(sizes: Sizes) -> NDArray[np.int32]:
    """(1024, 8) int32. Row: 10 bits starting at a byte; column o: the length in bits of a repeat
    record starting at bit o, or ``LITERAL_MARK`` when a literal record starts there."""
    window = np.arange(1024)[:, None]
    head = (window >> (7 - np.arange(8)[None, :])) & 7  # flag and selector
    length = 1 + 2 + np.asarray(sizes)[head & 3] + WORD_BITS
    return np.where(head >= 4, length, LITERAL_MARK).astype(np.int32)


def _next_starts(
    padded: NDArray[np.uint8], first: int, last: int, sizes: Sizes
) -> NDArray[np.int32]:
    """For each bit of bytes first..last-1 (local index i from bit 8*first): the local index of
    the record after one starting there, or ``LITERAL_MARK + i`` if a literal record starts there."""
    window = padded[first:last].astype(np.uint16) << 2
    window |= padded[first + 1 : last + 1] >> 6
    table = _repeat_table(sizes).take(window, axis=0).ravel()
    table += np.arange(table.size, dtype=np.int32)
    return table


def _next_starts_exact(windows: NDArray[np.uint64], first: int, last: int, sizes: Sizes) -> NDArray[np.int32]:
    """As :func:`_next_starts`, with the true length of literal records too (slower)."""
    pos = np.arange(8 * first, 8 * last, dtype=np.int64)
    rec = _fields(windows, pos, np.asarray(sizes, dtype=np.int64))
    data_bits = np.where(rec.repeat, WORD_BITS, WORD_BITS * rec.words)
    return (pos - 8 * first + 3 + rec.size + data_bits).astype(np.int32)


def _chase(table: NDArray[np.int32], start: int) -> list[int]:
    """start, table[start], table[table[start]], ... up to the first value past the table."""
    chain = [start]
    # map() reads the list while extend() appends to it: a pointer chase at C speed.
    with suppress(IndexError):
        chain.extend(map(memoryview(table).__getitem__, chain))  # type: ignore[arg-type]
    return chain


def _record_starts(padded: NDArray[np.uint8], nbits: int, sizes: Sizes) -> Int64s:
    """Bit positions of the records after the header, in stream order, int64 of shape (n,).

    May run on into the padding and past the last record; the caller cuts at ``num`` words.
    """
    windows = np.ndarray((padded.size - 7,), dtype=">u8", buffer=padded, strides=(1,))
    shortest = 1 + 2 + min(sizes) + WORD_BITS
    parts: list[Int64s] = []
    pos, exact = HEADER_BITS, False
    while pos < nbits:
        first = pos >> 3
        last = min(first + CHUNK_BYTES, nbits >> 3)
        if exact:
            table = _next_starts_exact(windows, first, last, sizes)
        else:
            table = _next_starts(padded, first, last, sizes)
        chain = _chase(table, pos - 8 * first)
        parts.append(np.frombuffer(array.array("q", chain), dtype=np.int64)[:-1] + 8 * first)
        pos = 8 * first + chain[-1]
        if pos >= LITERAL_MARK:  # a literal record starts at the last position found
            pos = int(parts[-1][-1])
            if pos + shortest > nbits:  # too short to be a record: padding
                break
            exact, parts[-1] = True, parts[-1][:-1]
    return np.concatenate(parts)


def _records(rle: Sequence[int] | bytes | NDArray[np.integer], height: int, width: int) -> tuple[_Records, Int64s, NDArray[np.uint64]]:
    """The records that make up the image's ``height * width * 4`` words, their first word index
    (int64, shape (n,)), and the stream's 64-bit read windows (one per byte)."""
    padded = _as_bytes(rle)
    nbits = 8 * (padded.size - 8)
    sizes = _read_header(padded, padded.size - 8, height, width)
    num = height * width * 4
    windows = np.ndarray((padded.size - 7,), dtype=">u8", buffer=padded, strides=(1,))
    pos = _record_starts(padded, nbits, sizes)
    rec = _fields(windows, pos, np.asarray(sizes, dtype=np.int64))
    ends = np.cumsum(rec.words)
    k = int(np.searchsorted(ends, num))  # the record that completes num words
    if k == ends.size:
        done = int(ends[-1]) if ends.size else 0
        raise RLEError(f"RLE truncated: the stream ends after {done} of {num} words")
    if ends[k] != num:
        raise RLEError(
            f"RLE record at bit {pos[k]} repeats words {ends[k] - rec.words[k]}..{ends[k] - 1}, "
            f"past the {num} words of the image"
        )
    data_bits = WORD_BITS if rec.repeat[k] else WORD_BITS * int(rec.words[k])
    if int(pos[k] + 3 + rec.size[k]) + data_bits > nbits:
        raise RLEError(f"RLE truncated: its last record needs more than the {nbits} bits given")
    cut = _Records(*(field[: k + 1] for field in rec))
    return cut, ends[: k + 1] - cut.words, windows


def _literal_pixels(rec: _Records, first_word: Int64s, windows: NDArray[np.uint64]) -> tuple[Int64s, Int64s]:
    """Pixels whose alpha word lies in a literal record, and those alpha values (int64, (m,))."""
    lit = ~rec.repeat
    first, words, data = first_word[lit], rec.words[lit], rec.pos[lit] + 3 + rec.size[lit]
    skip = (ALPHA_WORD - first) % 4  # words before the record's first alpha word
    count = np.maximum((words - skip + 3) // 4, 0)
    owner = np.repeat(np.arange(count.size), count)
    nth = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    word = skip[owner] + 4 * nth  # index inside the record
    bit = data[owner] + WORD_BITS * word
    values = (windows[bit >> 3].astype(np.int64) << (bit & 7)) >> 56 & 0xFF
    return (first[owner] + word) >> 2, values


def _pixel_runs(rle: Sequence[int] | bytes | NDArray[np.integer], height: int, width: int) -> tuple[Int64s, Int64s, Int64s]:
    """(starts, stops, alpha): int64 arrays of shape (n,) that cover every pixel once, in order.
    Runs may be empty; adjacent runs may share a value."""
    rec, first_word, windows = _records(rle, height, width)
    starts, stops = first_word >> 2, (first_word + rec.words) >> 2
    if rec.repeat.all():
        return starts, stops, rec.value
    pixels, values = _literal_pixels(rec, first_word, windows)
    starts = np.concatenate([starts[rec.repeat], pixels])
    stops = np.concatenate([stops[rec.repeat], pixels + 1])
    values = np.concatenate([rec.value[rec.repeat], values])
    order = np.argsort(starts, kind="stable")
    return starts[order], stops[order], values[order]


def decode_runs(
    rle: Sequence[int] | bytes | NDArray[np.integer], height: int, width: int, threshold: int = 128
) -> tuple[Int64s, Int64s]:
    """Runs of pixels whose alpha is at least ``threshold``: ``(starts, stops)``.

    Both int64 of shape (n,): flat pixel indices ``row * width + col``, sorted, non-overlapping,
    adjacent runs merged; run ``i`` covers pixels ``starts[i]`` to ``stops[i] - 1``.
    Raises :class:`RLEError` when the stream is corrupt or not ``height`` x ``width``.
    """
    starts, stops, alpha = _pixel_runs(rle, height, width)
    keep = (alpha >= threshold) & (stops > starts)
    starts, stops = starts[keep], stops[keep]
    if starts.size == 0:
        return starts, stops
    new = np.empty(starts.size + 1, dtype=np.bool_)  # new[i]: a gap before run i
    new[0] = new[-1] = True
    np.not_equal(starts[1:], stops[:-1], out=new[1:-1])
    return starts[new[:-1]], stops[new[1:]]


def decode_alpha(rle: Sequence[int] | bytes | NDArray[np.integer], height: int, width: int) -> NDArray[np.uint8]:
    """The alpha plane: uint8 of shape (height, width). For previews and tests; allocates the image."""
    starts, stops, alpha = _pixel_runs(rle, height, width)
    return np.repeat(alpha.astype(np.uint8), stops - starts).reshape(height, width)


def paint_runs(flat: NDArray[np.integer], starts: Int64s, stops: Int64s, value: int) -> None:
    """Set ``flat[starts[i]:stops[i]] = value`` for every run.

    ``flat``: 1-D view of the (height, width) canvas, any integer dtype, changed in place.
    ``starts``, ``stops``: int arrays of shape (n,), as returned by :func:`decode_runs`.
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
    if short.any():  # gather all short runs' pixels and set them at once
        s, n = starts[short], lengths[short]
        flat[np.repeat(s - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))] = value
    for start, stop in zip(starts[~short].tolist(), stops[~short].tolist()):
        flat[start:stop] = value


def runs_area(starts: Int64s, stops: Int64s) -> int:
    """Number of pixels covered by non-overlapping runs (int)."""
    return int(np.sum(np.asarray(stops, dtype=np.int64) - np.asarray(starts, dtype=np.int64)))

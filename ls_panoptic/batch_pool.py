"""Converting a batch's images in worker processes (``convert --jobs N``), results in input order.

The parent keeps the writer: it sends each worker one planned task (the task's parsed
annotation, its key and image URL: no pixels) and receives, in input order, what the task
became: the outcome, the mask as one zstd frame (a 12 MP mask of a few dozen segments is
tens of KB, not 48 MB), and what the writer's :meth:`~ls_panoptic.writers.EntryWriter.encoder`
made of it in the worker (PNGs, segment statistics, the photo's bytes). At most ``2 * jobs``
tasks are in flight, so memory stays bounded whatever the project's size.

Each worker converts as a single process does (:func:`~ls_panoptic.batch._convert_one`, its
own :class:`~ls_panoptic.compose.Scratch`), and the writer's ``add(entry, image)`` and
``add_encoded(entry, image, encoder(entry, image))`` write the same bytes, so the output is
the same, byte for byte, whatever ``jobs`` is.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.context
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from .compose import Scratch
from .errors import ImageError, SnapshotError
from .images import ImageIndex
from .labels import LabelSet
from .writers import Encoder

__all__ = ["Converted", "Worker", "default_jobs", "run_in_pool", "start_early"]

# a worker's mask crosses the process boundary as one zstd frame: level 1 packs a 12 MP
# id map about 800x in a few ms (DESIGN 7), where pickling the array would copy 48 MB twice
_ZSTD_LEVEL = 1


def _context() -> multiprocessing.context.ForkServerContext:
    # forkserver: a fresh, single-threaded server forks the workers (no fork of this process,
    # which may hold threads: the writers', pyarrow's); ls_panoptic is imported there once
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["ls_panoptic.batch", "ls_panoptic.hf_rows"])
    return context


def start_early() -> None:
    """Start the process that forks the workers now (it takes 0.3-0.5 s to import
    ls_panoptic), so that it starts while the caller reads the export."""
    _context()
    forkserver.ensure_running()


def default_jobs() -> int:
    """The CPUs this process may run on (its affinity where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Converted:
    """A worker's result for one task: the outcome with its entry's mask left out
    (``mask``: zstd frame of its C-order bytes, ``shape``, ``dtype``), and what the writer's
    encoder made of it (``None`` without an encoder or an entry)."""

    outcome: Any  # ls_panoptic.batch.Outcome
    mask: bytes | None = None
    shape: tuple[int, ...] = ()
    dtype: str = ""
    encoded: Any = None


@dataclass(frozen=True)
class Worker:
    """What every worker process holds (sent once, when it starts): the label set, the images,
    the writer's encoder, the function that converts one planned task, and whether the parent
    needs each mask's pixels (``masks``; without them only its shape and dtype are sent)."""

    labels: LabelSet
    images: ImageIndex | None
    encoder: Encoder | None
    convert: Callable[..., Any]  # ls_panoptic.batch._convert_one (module-level, picklable)
    failed: Callable[..., Any]  # ls_panoptic.batch._failed
    masks: bool = True


_state: tuple[Worker, Scratch] | None = None


def _start(worker: Worker) -> None:
    global _state
    _state = (worker, Scratch())


def _run(planned: Any) -> Converted:
    assert _state is not None, "a worker process runs _start first"
    worker, scratch = _state
    outcome = worker.convert(planned, worker.labels, worker.images, scratch)
    entry = outcome.entry
    if entry is None:
        return Converted(outcome)
    encoded = None
    if worker.encoder is not None:
        try:
            encoded = worker.encoder(entry, outcome.image)
        except ImageError as exc:  # this format cannot hold this entry: it fails alone
            exc.in_task(outcome.task_id)
            failure = worker.failed(outcome.task_id, outcome.key, exc)
            return Converted(dataclasses.replace(outcome, entry=None, image=None, failure=failure))
    mask = np.ascontiguousarray(entry.panoptic_mask)
    frame = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(mask.data) if worker.masks else b""
    bare = dataclasses.replace(entry, panoptic_mask=np.empty((0, 0), dtype=mask.dtype))
    return Converted(
        dataclasses.replace(outcome, entry=bare), frame, mask.shape, mask.dtype.str, encoded
    )


class _Masks:
    """The parent's one reusable mask buffer: a worker's frame is decompressed into it (a
    fresh 48 MB array per entry costs page faults; DESIGN 7). Valid until the next entry."""

    def __init__(self) -> None:
        self._buffer: npt.NDArray[Any] | None = None
        self._decompressor = zstandard.ZstdDecompressor()

    def restore(self, converted: Converted) -> Any:
        """The outcome with its entry's mask back (the outcome itself without an entry). A
        mask sent without its pixels comes back as zeros of its shape and dtype that take no
        memory (a read-only broadcast view)."""
        outcome = converted.outcome
        if converted.mask is None:
            return outcome
        dtype = np.dtype(converted.dtype)
        if not converted.mask:
            shape_only = np.broadcast_to(np.zeros((), dtype=dtype), converted.shape)
            entry = dataclasses.replace(outcome.entry, panoptic_mask=shape_only)
            return dataclasses.replace(outcome, entry=entry)
        buffer = self._buffer
        if buffer is None or buffer.shape != converted.shape or buffer.dtype != dtype:
            buffer = self._buffer = np.empty(converted.shape, dtype=dtype)
        with self._decompressor.stream_reader(converted.mask) as reader:
            view = buffer.reshape(-1).view(np.uint8).data
            done = 0
            while done < len(view):
                got = reader.readinto(view[done:])
                if not got:
                    raise RuntimeError("a worker's mask frame is shorter than its mask")
                done += got
        entry = dataclasses.replace(outcome.entry, panoptic_mask=buffer)
        return dataclasses.replace(outcome, entry=entry)


def run_in_pool(
    worker: Worker, items: Iterable[tuple[Any, Any]], jobs: int
) -> Generator[tuple[Any, Any, Any], None, None]:
    """For each ``(item, planned)`` in order: ``(item, outcome, encoded)``, ``planned``
    converted in one of ``jobs`` processes (``planned`` ``None``: nothing to convert, the
    outcome ``None``). At most ``2 * jobs`` conversions are in flight; closing the iterator
    early (an error, ``--strict``) stops the workers and drops what they had not finished."""
    context = _context()
    masks = _Masks()
    window: deque[tuple[Any, Future[Converted] | None]] = deque()
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start, initargs=(worker,))
    try:
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(window) < 2 * jobs:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                item, planned = nxt
                window.append((item, pool.submit(_run, planned) if planned is not None else None))
            if not window:
                return
            item, future = window.popleft()
            if future is None:
                yield item, None, None
                continue
            try:
                converted = future.result()
            except BrokenProcessPool as exc:
                raise SnapshotError(
                    "a worker process of --jobs stopped without a result (out of memory?); "
                    f"nothing was written: run again with fewer --jobs ({exc})"
                ) from exc
            yield item, masks.restore(converted), converted.encoded
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

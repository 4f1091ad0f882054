"""Listed tasks converted for a resync (:mod:`worker.reconcile`), in worker processes when
there are many.

A resync of a big project (a first sync, a rebuild) converts thousands of listed tasks; one
process converts a 1080p task with a bitmask in ~16 ms of CPU (a third of it decoding the
bitmask's PNG). So a batch
of :data:`worker.reconcile.BATCH` or more tasks goes to a pool of processes (one per CPU the
process may use, ``forkserver``: nothing of the resync's connections is inherited; a process
that dies fails the resync, which rq retries, instead of hanging it), started
on the first such batch and reused for the rest; the tasks of a smaller resync are converted in
the resync's own process. Each task comes back as a :class:`~worker._store_batch.TaskWrite`,
its entry already encoded (a few KB instead of the 8 MB mask). :meth:`Converter.submit`
returns at once: the resync lists the next page while the pool converts.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ls_panoptic.batch_pool import default_jobs
from ls_panoptic.compose import Scratch
from ls_panoptic.labels import LabelSet
from ls_panoptic.model import ConvertOptions, Task

from ._store_batch import TaskWrite
from .outcome import task_outcome

__all__ = ["Converter"]

#: tasks sent to a pool process at a time
CHUNK = 10

#: a pool process's conversion context (set by ``_start``)
_context: tuple[ConvertOptions, int, LabelSet, str, Scratch] | None = None


class Converter:
    """Converts ``(task, observed)`` pairs of one project into writes (``None``: the mask
    needs the image, left to a sync job); ``pool_from``: the batch size from which a pool is
    used (``None``: never)."""

    def __init__(
        self,
        options: ConvertOptions,
        project: int,
        labels: LabelSet,
        digest: str,
        *,
        pool_from: int | None,
    ) -> None:
        self._args = (options, project, labels, digest)
        self._pool_from = pool_from
        self._pool: ProcessPoolExecutor | None = None
        _start(*self._args)  # the inline context, in this process

    def submit(self, items: list[tuple[Task, str]]) -> Callable[[], list[TaskWrite | None]]:
        """Start converting ``items``; returns the function that waits for their writes."""
        if self._pool_from is None or len(items) < self._pool_from or default_jobs() < 2:
            done = [_convert(item) for item in items]
            return lambda: done
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                default_jobs(), mp_context=multiprocessing.get_context("forkserver"),
                initializer=_start, initargs=self._args,
            )  # fmt: skip
        pending = self._pool.map(_convert, items, chunksize=CHUNK)  # a broken pool raises
        return lambda: list(pending)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _start(options: ConvertOptions, project: int, labels: LabelSet, digest: str) -> None:
    global _context
    _context = (options, project, labels, digest, Scratch())


def _convert(item: tuple[Task, str]) -> TaskWrite | None:
    """One listed task's write, converted as a sync job converts a pulled one."""
    assert _context is not None
    options, project, labels, digest, scratch = _context
    task, observed = item
    made = task_outcome(options, project, task, labels, digest, images=None, scratch=scratch)
    return None if made is None else TaskWrite.of(made, observed, digest)

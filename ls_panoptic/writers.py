"""Where a batch conversion writes its entries: the one interface behind every output format.

:func:`~ls_panoptic.batch.convert_tasks` streams each converted entry, with the image it was
checked against, into an :class:`EntryWriter`, one at a time, and writes the sidecar where the
writer says. Three writers exist:

- :class:`PickleWriter` (the default): the pickle of DESIGN 1, byte for byte as
  :class:`~ls_panoptic.snapshot.SnapshotWriter` writes it; sidecar ``<name>.meta.json`` beside it.
- :class:`~ls_panoptic.coco_panoptic.CocoPanopticWriter` and
  :class:`~ls_panoptic.hf_dataset.HFDatasetWriter`: a folder, built as ``<folder>.partial``
  and renamed into place when complete (:class:`StagedFolder`); sidecar
  ``ls-panoptic.meta.json`` inside it.

A writer may refuse one entry with an :class:`~ls_panoptic.errors.ImageError` (an 8-bit
channel cannot hold id 300): that image fails as any other, and the rest are written.

Parallel conversion (``convert --jobs N``, :mod:`ls_panoptic.batch_pool`) splits ``add`` in
two: the writer's :meth:`~EntryWriter.encoder` (a picklable function of one entry and its
image: PNG encoding, segment statistics, reading the photo) runs in the worker process that
converted the entry, and :meth:`~EntryWriter.add_encoded` takes its result in the parent, in
input order. ``add(entry, image)`` and ``add_encoded(entry, image, encoder(entry, image))``
write the same bytes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from .errors import SnapshotError
from .images import ImageInfo
from .model import Entry
from .snapshot import SnapshotWriter, sidecar_path

__all__ = [
    "FOLDER_SIDECAR",
    "BackgroundWork",
    "Encoder",
    "EntryWriter",
    "FolderWriter",
    "PickleWriter",
    "StagedFolder",
    "write_file",
]

#: the sidecar's name inside a folder output
FOLDER_SIDECAR = "ls-panoptic.meta.json"


#: a writer's per-entry work that needs no writer state: runs in a worker process, its result
#: (picklable) goes to :meth:`EntryWriter.add_encoded`; raises ImageError as ``add`` does
Encoder = Callable[[Entry, ImageInfo | None], Any]


class EntryWriter(Protocol):
    """Receives a batch's entries one at a time; a context manager that commits on a clean
    exit and leaves any previous output untouched on an exception."""

    @property
    def output(self) -> Path: ...

    @property
    def sidecar(self) -> Path: ...

    def __enter__(self) -> EntryWriter: ...

    def add(self, entry: Entry, image: ImageInfo | None) -> None:
        """Write one entry; ``image``: the image file it was checked against, when given.

        Raises:
            ImageError: this entry cannot be written in this format (the others still are).
        """

    def encoder(self) -> Encoder | None:
        """The part of :meth:`add` a worker process can do (``None``: nothing to do there)."""

    def add_encoded(self, entry: Entry, image: ImageInfo | None, encoded: Any) -> None:
        """As :meth:`add`, given ``encoder()(entry, image)`` (``None`` without an encoder).
        With an encoder, it must not read the mask's pixels (a worker's parent may have only
        its shape and dtype)."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class PickleWriter:
    """The default writer: the snapshot pickle, through :class:`SnapshotWriter` unchanged."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)
        self.sidecar = sidecar_path(self.output)
        self._snapshot = SnapshotWriter(self.output)

    def __enter__(self) -> PickleWriter:
        self._snapshot.__enter__()
        return self

    def add(self, entry: Entry, image: ImageInfo | None) -> None:
        self._snapshot.add(entry.key, entry.payload())

    def encoder(self) -> Encoder | None:
        return None  # the pickle is the mask itself

    def add_encoded(self, entry: Entry, image: ImageInfo | None, encoded: Any) -> None:
        self.add(entry, image)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._snapshot.__exit__(exc_type, exc, tb)


class StagedFolder:
    """A folder output written as ``<folder>.partial`` and renamed into place on commit.

    An existing ``folder`` is replaced only when it is an earlier output of ours (it holds
    :data:`FOLDER_SIDECAR`); any other existing path is refused before anything is written.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.partial = self.folder.with_name(self.folder.name + ".partial")
        self.sidecar = self.folder / FOLDER_SIDECAR

    def open(self) -> Path:
        """Create the empty staging folder and return it.

        Raises:
            SnapshotError: ``folder`` exists and is not an earlier output (nothing written).
        """
        if self.folder.exists() and not (self.folder / FOLDER_SIDECAR).is_file():
            raise SnapshotError(
                f"{self.folder} exists and is not an ls-panoptic output folder: "
                "give --output a new folder name (an earlier output is replaced)"
            )
        shutil.rmtree(self.partial, ignore_errors=True)
        try:
            self.partial.mkdir(parents=True)
        except OSError as exc:
            raise SnapshotError(f"cannot write {self.folder}: {exc.strerror}") from exc
        return self.partial

    def commit(self) -> None:
        """Put the staged folder in place of ``folder`` (the earlier output goes)."""
        old = self.folder.with_name(self.folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        try:
            if self.folder.exists():
                self.folder.rename(old)
            self.partial.rename(self.folder)
        except OSError as exc:
            raise SnapshotError(f"cannot write {self.folder}: {exc.strerror}") from exc
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)


class BackgroundWork:
    """One worker thread that runs an output's encoding and writing while the next image is
    converted (PNG encoding releases the interpreter lock): jobs run in the order submitted,
    and :meth:`submit` waits for the previous job first, so at most one entry's encoded data
    is alive besides the entry being converted. A job's error is raised by the next
    :meth:`submit` or by :meth:`finish`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ls-panoptic-writer")
        self._pending: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self._wait()
        self._pending = self._pool.submit(job)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        """Wait for the last job; raise its error."""
        try:
            self._wait()
        finally:
            self._pool.shutdown()

    def cancel(self) -> None:
        """Stop without raising (the output is being abandoned)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending = None


class FolderWriter:
    """What the folder formats share: the folder staged (:class:`StagedFolder`), encoding in
    the background (:class:`BackgroundWork`), commit on a clean exit, abort otherwise.
    Subclasses add ``add``, ``encoder`` and ``add_encoded`` and may override :meth:`_begin`,
    :meth:`_finish`, :meth:`_close`."""

    def __init__(self, folder: Path) -> None:
        self._staged = StagedFolder(folder)
        self.output, self.sidecar = self._staged.folder, self._staged.sidecar
        self._root = self._staged.partial
        self._work = BackgroundWork()

    def add(self, entry: Entry, image: ImageInfo | None) -> None:
        """As :meth:`EntryWriter.add`."""
        raise NotImplementedError

    def encoder(self) -> Encoder | None:
        """As :meth:`EntryWriter.encoder`."""
        raise NotImplementedError

    def add_encoded(self, entry: Entry, image: ImageInfo | None, encoded: Any) -> None:
        """As :meth:`EntryWriter.add_encoded`."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Lay out the empty staging folder ``self._root``."""

    def _finish(self) -> None:
        """Write what comes last (indexes, cards); the background work is done."""

    def _close(self) -> None:
        """Release open files (the output is being abandoned)."""

    def __enter__(self) -> FolderWriter:
        self._root = self._staged.open()
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self._work.finish()
                self._finish()
            except BaseException:
                self._close()
                self._staged.abort()
                raise
            self._staged.commit()
            return
        self._work.cancel()
        self._close()
        self._staged.abort()


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, its folders created.

    Raises:
        SnapshotError: the write failed.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise SnapshotError(f"cannot write {path}: {exc.strerror}") from exc

"""Reading any output back, one entry at a time: ``open_snapshot(path)``.

>>> snapshot = open_snapshot("gt.pkl")          # or an hf / coco-panoptic folder  # doctest: +SKIP
>>> for name, entry in snapshot.items():                                          # doctest: +SKIP
...     entry["panoptic_mask"], entry["inst2class"]

Each entry is the pickle's ``{"panoptic_mask": uint32 (height, width), "inst2class": {id:
class}}``, built when it is reached, so code written for the pickle's dict works on a project
that does not fit in memory. Formats:

- the pickle written by ``convert`` or the live service (:mod:`ls_panoptic.snapshot`): read
  entry by entry from the stream (header, then ``key value SETITEM`` per entry, no memo);
  any other pickle of a dict is loaded whole (it was written whole);
- a ``--format coco-panoptic`` folder (:mod:`ls_panoptic.coco_panoptic`);
- a ``--format hf`` folder (:mod:`ls_panoptic.hf_dataset`).
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import SnapshotError
from .snapshot import sidecar_path
from .writers import FOLDER_SIDECAR

__all__ = ["Snapshot", "open_snapshot"]

_STREAM_HEADER = pickle.PROTO + bytes([5]) + pickle.EMPTY_DICT
_CODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
#: arguments that are a length then that many bytes: skipped, not read (a mask's BYTEARRAY8)
_SIZED = {
    pickletools.bytearray8: struct.Struct("<Q"),  # type: ignore[attr-defined]
    pickletools.bytes8: struct.Struct("<Q"),
    pickletools.unicodestring8: struct.Struct("<Q"),
    pickletools.bytes4: struct.Struct("<I"),
    pickletools.unicodestring4: struct.Struct("<I"),
}


@dataclass(frozen=True)
class Snapshot:
    """One output, read lazily. ``format``: ``pickle``, ``hf`` or ``coco-panoptic``."""

    path: Path
    format: str

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(image key, entry)`` pairs, each built when reached."""
        if self.format == "pickle":
            return _pickle_entries(self.path)
        return self._folder_reader()[1]

    def keys(self) -> Iterator[str]:
        return (key for key, _entry in self.items())

    def __iter__(self) -> Iterator[str]:
        return self.keys()

    def __getitem__(self, key: str) -> dict[str, Any]:
        """One entry (found by reading up to it)."""
        for name, entry in self.items():
            if name == key:
                return entry
        raise KeyError(key)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> label: from the sidecar for a pickle, from the data for a folder."""
        if self.format == "pickle":
            meta = json.loads(sidecar_path(self.path).read_text(encoding="utf-8"))
            return {int(k): str(v) for k, v in meta["id2label"].items()}
        return self._folder_reader()[0]

    def _folder_reader(self) -> tuple[dict[int, str], Iterator[tuple[str, dict[str, Any]]]]:
        if self.format == "hf":
            from .hf_dataset import read_hf_dataset  # pyarrow only when it is needed

            return read_hf_dataset(self.path)
        from .coco_panoptic import read_coco_panoptic

        return read_coco_panoptic(self.path)


def open_snapshot(path: str | Path) -> Snapshot:
    """The output at ``path``, its format told by what is there (see the module docstring).

    Raises:
        SnapshotError: nothing at ``path``, or not one of the three formats.
    """
    path = Path(path)
    if path.is_file():
        return Snapshot(path, "pickle")
    if (path / "data").is_dir() and any((path / "data").glob("*.parquet")):
        return Snapshot(path, "hf")
    if any((path / "annotations").glob("panoptic_*.json")):
        return Snapshot(path, "coco-panoptic")
    what = "an ls-panoptic output folder" if (path / FOLDER_SIDECAR).exists() else "anything"
    raise SnapshotError(
        f"{path}: not a snapshot pickle, a --format hf folder (data/*.parquet) or a "
        f"--format coco-panoptic folder (annotations/panoptic_*.json); found {what} else"
    )


def _pickle_entries(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as file:
        if file.read(len(_STREAM_HEADER)) != _STREAM_HEADER:
            file.seek(0)
            data = pickle.load(file)  # not our stream: it was written whole, read it whole
            if not isinstance(data, dict):
                raise SnapshotError(f"{path}: the pickle holds a {type(data).__name__}, not a dict")
            yield from data.items()
            return
        while (span := _next_entry(file)) is not None:
            yield from pickle.loads(_STREAM_HEADER + span + pickle.STOP).items()


def _next_entry(file: BinaryIO) -> bytes | None:
    """The bytes of the next ``key value SETITEM`` of the stream; ``None`` at ``STOP``.

    Opcodes are walked with their arguments, sized ones (an array's ``BYTEARRAY8``) skipped,
    so the entry's bytes are read once, to load it; the entry ends at the ``SETITEM`` that
    finds two objects on the stack above the top-level dict (depth counted from its start).
    """
    start = file.tell()
    depth, marks = 0, []
    while True:
        code = file.read(1)
        if not code:
            raise SnapshotError(f"{getattr(file, 'name', 'snapshot')}: truncated snapshot")
        op = _CODES[code]
        sized = _SIZED.get(op.arg) if op.arg is not None else None
        if sized is not None:
            (length,) = sized.unpack(file.read(sized.size))
            file.seek(length, io.SEEK_CUR)
        elif op.arg is not None:
            op.arg.reader(file)
        if op.name == "STOP":
            return None
        if op.name == "MARK":
            marks.append(depth)
            continue
        if pickletools.markobject in op.stack_before:  # pops down to the last MARK
            below = op.stack_before.index(pickletools.markobject)
            depth = marks.pop() - below + len(op.stack_after)
        else:
            depth += len(op.stack_after) - len(op.stack_before)
        if op.name == "SETITEM" and depth == 0:
            end = file.tell()
            file.seek(start)
            return file.read(end - start)

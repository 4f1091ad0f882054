"""How the store encodes what it keeps in Redis: JSON text and zstd bytes, never pickles.

Glossary of the stored formats:

- entry blob (HASH, immutable once written)::

      key                image key (the snapshot dict key)
      mask               zstd (level 3) frame of the mask, C order, narrowed to ``uint16`` when
                         every id is below 65536, else ``uint32``
      dtype              ``uint16`` | ``uint32``: the stored element type of ``mask``
      height, width      decimal ints: the mask shape ``(height, width)``
      inst2class         JSON object ``{"<instance id>": class id}``
      meta               JSON provenance (task_id, annotation_id, updated_at, counts, warnings)
      source_updated_at  ISO 8601 timestamp of the Label Studio state it was made from
      image_url          (optional) the task's image URL, as in its data: where a snapshot in
                         another format (``snapshot --format hf``) reads the photo from

  Its *version* is a hash of those fields: the same conversion stores the same blob.
- state record (JSON, one per task in the project's ``states`` hash): see :class:`EntryState`.
- failure record (JSON, one per task in error in the project's ``failures`` hash): the
  sidecar's ``{"task_id", "key", "message"}`` (:class:`ls_panoptic.sidecar.Failure`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import zstandard

from ls_panoptic.model import Entry
from ls_panoptic.sidecar import Failure

from .keys import is_version

__all__ = [
    "EntryState",
    "StoreError",
    "StoredEntry",
    "decode_entry",
    "decode_failure",
    "decode_state",
    "dumps",
    "encode_entry",
    "encode_failure",
    "encode_state",
    "peek_state",
    "text",
]

ZSTD_LEVEL = 3
_UINT16_LIMIT = 1 << 16
_STORED_DTYPES: dict[str, np.dtype[Any]] = {
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
}
BLOB_FIELDS = (
    "key", "mask", "dtype", "height", "width", "inst2class", "meta", "source_updated_at",
)  # fmt: skip
#: hashed into the version when present only: blobs written before it keep their versions
OPTIONAL_BLOB_FIELDS = ("image_url",)


class StoreError(Exception):
    """What Redis holds is unusable (corrupt, or gone too early), or writers kept conflicting."""


@dataclass(frozen=True)
class StoredEntry:
    """One entry read back from the store.

    Attributes:
        panoptic_mask: ``uint32`` ``(height, width)``, C-contiguous, a fresh writeable array.
        inst2class: ``{instance id: class id}``, plain Python ints.
        stale: the last good entry of a task whose latest conversion failed, kept for review
            (``/entries``, previews) but in no snapshot.
        image_url: the task's image URL, ``None`` in a blob stored before it was kept.
    """

    key: str
    panoptic_mask: npt.NDArray[np.uint32]
    inst2class: dict[int, int]
    meta: dict[str, Any]
    source_updated_at: str
    stale: bool = False
    image_url: str | None = None

    def payload(self) -> dict[str, Any]:
        """The exact per-image value of the output contract."""
        return {"panoptic_mask": self.panoptic_mask, "inst2class": self.inst2class}


@dataclass(frozen=True)
class EntryState:
    """What the store knows about one task.

    Attributes:
        key: image key of the task's entry, current or stale (``None`` when it has none).
        updated_at: ISO timestamp of the newest Label Studio state seen for the task.
        status: ``ok`` (entry current), ``empty`` (no usable annotation: no entry) or
            ``error`` (last conversion failed: no entry in snapshots, which list the task's
            failure instead, as a batch conversion does; the last good entry, if any, is kept
            for review as ``stale_version``).
        converted_at: when the store last recorded this state (UTC, ISO 8601).
        config_hash: SHA-256 (hex) of the label config the entry was converted with, so a
            resync finds entries a config change left behind (``None``: no entry, or a record
            written before this field existed).
        error_fingerprint: for an ``error`` that only a change of the task can mend (the
            conversion of its selected annotation failed), what it failed on: the string of
            :func:`worker.reconcile.failure_fingerprint`, which a resync compares with what Label
            Studio lists to skip re-converting an unchanged failure. ``None``: any other state,
            a failure that may pass on a retry, or a record written before this field existed.
        stale_version: for an ``error``, the blob version of the last good entry, kept (not
            expiring) so ``/entries`` and previews can still show it, marked stale; it is in no
            manifest, so in no snapshot. ``None``: any other state, or no good entry before.
        remedy: for an ``error``, what an operator could change about it
            (:class:`ls_panoptic.errors.Remedy` value; ``/entries`` words it as the setting to
            change). ``None``: only the task itself can mend it, or any other state.
    """

    task_id: int
    key: str | None
    annotation_id: int | None
    updated_at: str | None
    status: str
    error: str | None
    converted_at: str
    config_hash: str | None = None
    error_fingerprint: str | None = None
    stale_version: str | None = None
    remedy: str | None = None


def dumps(value: Any) -> str:
    """Compact JSON; ``ValueError`` for anything JSON cannot hold (NaN, numpy scalars, ...)."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-serialisable: {exc}") from None


def text(value: bytes | str | None) -> str | None:
    """A Redis reply as text (the store's client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def encode_entry(
    entry: Entry, source_updated_at: str, image_url: str | None = None
) -> tuple[str, dict[str, bytes | str | int]]:
    """``(version, blob fields)`` for ``entry`` (``image_url``: the task's, when known).

    Raises:
        ValueError: the mask is not a non-empty 2-D array of ids in ``0..2**32-1``, or
            inst2class / meta cannot be stored as JSON.
    """
    mask = np.asarray(entry.panoptic_mask)
    if mask.ndim != 2 or mask.size == 0 or mask.dtype.kind not in "ui":
        raise ValueError(f"panoptic_mask must be a non-empty 2-D integer array, not {mask.dtype}")
    top, bottom = int(mask.max()), int(mask.min()) if mask.dtype.kind == "i" else 0
    if bottom < 0 or top >= 1 << 32:
        raise ValueError(f"panoptic_mask ids must be in 0..2**32-1, found {bottom}..{top}")
    dtype = "uint16" if top < _UINT16_LIMIT else "uint32"
    narrow = np.ascontiguousarray(mask, dtype=_STORED_DTYPES[dtype])
    fields: dict[str, bytes | str | int] = {
        "key": entry.key,
        "mask": zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(narrow.data),
        "dtype": dtype,
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "inst2class": dumps({str(int(k)): int(v) for k, v in entry.inst2class.items()}),
        "meta": dumps(entry.meta),
        "source_updated_at": source_updated_at,
    }
    if image_url is not None:
        fields["image_url"] = image_url
    digest = hashlib.blake2b(digest_size=16)
    for name in (*BLOB_FIELDS, *(f for f in OPTIONAL_BLOB_FIELDS if f in fields)):
        value = fields[name]
        digest.update(value if isinstance(value, bytes) else str(value).encode())
        digest.update(b"\0")
    return digest.hexdigest(), fields


def decode_entry(where: str, fields: dict[bytes, bytes], stale: bool = False) -> StoredEntry:
    """The entry held by the blob fields ``fields`` (``where`` names the blob in errors);
    ``stale``: see :class:`StoredEntry`.

    Raises:
        StoreError: a field is missing or does not decode.
    """
    try:
        raw = {name: fields[name.encode()] for name in BLOB_FIELDS}
        height, width = int(raw["height"]), int(raw["width"])
        mask = _decode_mask(raw["mask"], raw["dtype"].decode(), height, width)
        inst2class = {int(k): int(v) for k, v in json.loads(raw["inst2class"]).items()}
        meta = json.loads(raw["meta"])
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
        return StoredEntry(
            key=raw["key"].decode(),
            panoptic_mask=mask,
            inst2class=inst2class,
            meta=meta,
            source_updated_at=raw["source_updated_at"].decode(),
            stale=stale,
            image_url=text(fields.get(b"image_url")),
        )
    except (KeyError, ValueError, TypeError, AttributeError, zstandard.ZstdError) as exc:
        raise StoreError(f"{where}: stored entry is unreadable ({exc!r})") from exc


def _decode_mask(data: bytes, dtype: str, height: int, width: int) -> npt.NDArray[np.uint32]:
    """A fresh ``uint32`` array; the frame's declared size is checked before allocating."""
    stored = _STORED_DTYPES[dtype]
    size = height * width * stored.itemsize
    declared = zstandard.frame_content_size(data)
    if declared != size:
        raise ValueError(f"mask holds {declared} bytes, {height}x{width} {dtype} needs {size}")
    if dtype == "uint32":  # straight into the result: no intermediate copy of the pixels
        wide = np.empty((height, width), dtype=np.uint32)
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            filled = 0
            while filled < size:
                got = reader.readinto(wide.data.cast("B")[filled:])
                if not got:
                    raise ValueError(f"mask ends after {filled} of {size} bytes")
                filled += got
        return wide
    # one-shot decompression is faster; widening needs the narrow pixels once anyway
    narrow = np.frombuffer(zstandard.ZstdDecompressor().decompress(data), dtype=stored)
    return narrow.reshape(height, width).astype(np.uint32)


def encode_state(state: EntryState) -> str:
    """The JSON text of a state record."""
    return dumps(asdict(state))


def decode_state(where: str, raw: bytes | str) -> EntryState:
    """The state record stored as ``raw``.

    Raises:
        StoreError: not a state record.
    """
    return _decode(where, raw, EntryState, "state")


def peek_state(raw: bytes | str) -> tuple[str, str | None]:
    """``(status, stale_version)`` of a stored state record without decoding it whole; status
    ``unreadable`` (and no version) for a record that is not one: it must not block deletes."""
    try:
        data = json.loads(raw)
        status, stale = data.get("status"), data.get("stale_version")
    except (ValueError, AttributeError):
        return "unreadable", None
    if not isinstance(status, str) or not status:
        return "unreadable", None
    return status, stale if is_version(stale) else None


def encode_failure(failure: Failure) -> str:
    """The JSON text of a failure record."""
    return dumps(asdict(failure))


def decode_failure(where: str, raw: bytes | str) -> Failure:
    """The failure record stored as ``raw``.

    Raises:
        StoreError: not a failure record.
    """
    failure = _decode(where, raw, Failure, "failure")
    if not (
        isinstance(failure.task_id, int)
        and isinstance(failure.key, str | None)
        and isinstance(failure.message, str)
    ):  # snapshots sort and print them
        raise StoreError(f"{where}: failure record is unreadable ({failure!r})")
    return failure


_Record = TypeVar("_Record", EntryState, Failure)


def _decode(where: str, raw: bytes | str, kind: type[_Record], what: str) -> _Record:
    """The ``kind`` record stored as ``raw``, the JSON object of its fields."""
    try:
        data = json.loads(raw)
        # a field missing from an older record takes its default; a required one raises
        fields = [name for name in kind.__dataclass_fields__ if name in data]
        return kind(**{name: data[name] for name in fields})
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"{where}: {what} record is unreadable ({exc!r})") from exc

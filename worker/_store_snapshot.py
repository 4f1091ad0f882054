"""Point-in-time snapshots of one project, streamed from Redis in bounded memory.

1. *Pin*: ``HGETALL`` of the project's manifest at one instant: task id -> blob version. Blobs
   are immutable and a superseded one lives on for the store's grace period, so whatever
   happens to the project afterwards, the pinned blobs still say what it held at that instant.
2. *Plan*: read only the ``key`` field of each pinned blob. Two tasks with one image key both
   leave the snapshot and become failures naming each other (as in a batch conversion).
3. *Stream*: read, decode and write one blob at a time with
   :class:`ls_panoptic.snapshot.StreamWriter`, in task id order.

Memory: the pinned manifest (tens of bytes per task) plus about one decoded entry.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import redis

from ls_panoptic.labels import BACKGROUND
from ls_panoptic.snapshot import StreamWriter

from ._store_codec import StoreError, decode_entry, decode_state, text
from .keys import Keys

__all__ = ["SnapshotInfo", "snapshot_meta", "write_snapshot"]

SIDECAR_FORMAT = "ls-panoptic/1"
_BATCH = 512  # blob fields read per pipeline round trip


@dataclass(frozen=True)
class SnapshotInfo:
    """What one :func:`write_snapshot` wrote.

    Attributes:
        created_at: the instant the manifest was pinned (UTC, ISO 8601).
        keys: task id -> image key of every entry written, in file order.
        versions: the pinned manifest (task id -> blob version), collided tasks included.
        failures: tasks in error and image-key collisions: ``{task_id, key, message}``.
    """

    project: int
    created_at: str
    keys: dict[int, str]
    versions: dict[int, str]
    failures: list[dict[str, Any]]

    @property
    def count(self) -> int:
        """Entries written."""
        return len(self.keys)


def write_snapshot(client: redis.Redis, keys: Keys, project: int, file: BinaryIO) -> SnapshotInfo:
    """Stream the project's entries, as they are at the call, to ``file`` (see module doc).

    ``file`` receives one complete pickle (``ls_panoptic.snapshot`` format) only on success;
    it is neither flushed nor closed.

    Raises:
        StoreError: a pinned blob is gone (the snapshot outlived the grace period) or corrupt.
    """
    created_at = _now()
    versions = _pin(client, keys, project)
    planned, failures = _plan(client, keys, project, versions)
    with StreamWriter(file, name=f"snapshot of project {project}") as stream:
        for task_id, image_key in planned.items():
            blob = keys.blob(project, task_id, versions[task_id])
            fields = client.hgetall(blob)
            if not fields:
                raise _vanished(blob)
            entry = decode_entry(blob, fields)  # type: ignore[arg-type]  # bytes client
            del fields
            if entry.key != image_key:
                raise StoreError(f"{blob}: image key changed under an immutable blob")
            stream.add(image_key, entry.payload())
            del entry  # keep one decoded entry alive at a time
    failures = _merge(_error_states(client, keys, project), failures)
    return SnapshotInfo(project, created_at, planned, versions, failures)


def snapshot_meta(
    client: redis.Redis,
    keys: Keys,
    project: int,
    id2label: dict[int, str],
    info: SnapshotInfo | None = None,
) -> dict[str, Any]:
    """The sidecar JSON of ``info``'s snapshot, or of the project as it is now.

    Keys: ``format``, ``project``, ``created_at``, ``id2label`` (string ids), ``background_id``,
    ``entries`` (image key -> provenance, plus ``task_id`` and ``source_updated_at``),
    ``failures`` (``{task_id, key, message}``).
    """
    if info is None:
        created_at, versions = _now(), _pin(client, keys, project)
        planned, failures = _plan(client, keys, project, versions)
        failures = _merge(_error_states(client, keys, project), failures)
    else:
        created_at, versions, planned = info.created_at, info.versions, info.keys
        failures = list(info.failures)
    entries: dict[str, Any] = {}
    blobs = [keys.blob(project, t, versions[t]) for t in planned]
    for (task_id, image_key), (meta, stamp) in zip(
        planned.items(), _fields(client, blobs, "meta", "source_updated_at"), strict=True
    ):
        entries[image_key] = {**_json_object(meta), "task_id": task_id, "source_updated_at": stamp}
    background = [k for k, v in id2label.items() if v.lower() == BACKGROUND]
    return {
        "format": SIDECAR_FORMAT,
        "project": project,
        "created_at": created_at,
        "id2label": {str(k): v for k, v in sorted(id2label.items())},
        "background_id": background[0] if background else None,
        "entries": entries,
        "failures": failures,
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _pin(client: redis.Redis, keys: Keys, project: int) -> dict[int, str]:
    """The manifest at one instant (one ``HGETALL``), by task id."""
    raw = client.hgetall(keys.manifest(project))
    return {int(t): str(text(v)) for t, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def _plan(
    client: redis.Redis, keys: Keys, project: int, versions: dict[int, str]
) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """Task id -> image key of the entries to write, and the key collisions left out."""
    blobs = [keys.blob(project, t, v) for t, v in versions.items()]
    owners: dict[str, list[int]] = {}
    for task_id, (image_key,) in zip(versions, _fields(client, blobs, "key"), strict=True):
        owners.setdefault(image_key, []).append(task_id)
    planned = {tasks[0]: key for key, tasks in owners.items() if len(tasks) == 1}
    failures = [
        {
            "task_id": task_id,
            "key": key,
            "message": (
                f"task {task_id}: image key {key!r} is also produced by task "
                f"{', '.join(str(t) for t in tasks if t != task_id)}; "
                "set LS_PANOPTIC_KEY=path or task to tell them apart"
            ),
        }
        for key, tasks in owners.items()
        if len(tasks) > 1
        for task_id in tasks
    ]
    return dict(sorted(planned.items())), failures


def _fields(client: redis.Redis, blobs: list[str], *names: str) -> Iterator[list[str]]:
    """The named text fields of each blob, pipelined in batches; a missing blob is an error."""
    for start in range(0, len(blobs), _BATCH):
        batch = blobs[start : start + _BATCH]
        with client.pipeline(transaction=False) as pipe:
            for blob in batch:
                pipe.hmget(blob, list(names))
            replies = pipe.execute()
        for blob, values in zip(batch, replies, strict=True):
            if any(v is None for v in values):
                raise _vanished(blob)
            yield [str(text(v)) for v in values]


def _error_states(client: redis.Redis, keys: Keys, project: int) -> list[dict[str, Any]]:
    """Tasks whose last conversion failed (read now, incrementally: informational)."""
    where = keys.states(project)
    states = (decode_state(where, raw) for _t, raw in client.hscan_iter(where, count=_BATCH))
    failed = [s for s in states if s.status == "error"]
    return [
        {"task_id": s.task_id, "key": s.key, "message": s.error}
        for s in sorted(failed, key=lambda s: s.task_id)
    ]


def _merge(*failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((f for group in failures for f in group), key=lambda f: int(f["task_id"]))


def _json_object(raw: str) -> dict[str, Any]:
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _vanished(blob: str) -> StoreError:
    return StoreError(
        f"{blob} is gone: the snapshot outlived the store's grace period for superseded "
        "entries (raise grace_seconds, or retry)"
    )

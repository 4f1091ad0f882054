"""A store snapshot in another output format (``ls-panoptic snapshot --format hf|coco-panoptic``).

The entries a snapshot pinned (:meth:`worker.store.Store.pin_snapshot`) are decoded one at a time,
in the pickle's order, and handed to an :class:`ls_panoptic.writers.EntryWriter`: the writers of
``convert --format``, unchanged. Each entry's photo, when the format needs it, is read as a sync
reads it (``image_info`` of :class:`worker.labelstudio.LabelStudio`): from LS_PANOPTIC_IMAGES_DIR
by the path in the task's image URL, else downloaded from Label Studio, the API key sent to its
origin only. A download lands in a scratch folder that goes before the next entry is read.

Failures: an entry whose photo cannot be had (refused, missing, unreadable) or that the format
cannot hold fails its task alone, listed as ``convert`` lists failures; Label Studio down or the
key refused stops the snapshot (every photo would fail), and nothing is written.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

from ls_panoptic.errors import ImageError
from ls_panoptic.images import ImageInfo
from ls_panoptic.model import Entry
from ls_panoptic.sidecar import Failure, failure_message
from ls_panoptic.writers import EntryWriter

from .labelstudio import LabelStudioAuthError, LabelStudioError, LabelStudioUnavailable
from .runtime import LabelStudioAPI
from .store import SnapshotInfo, Store, StoredEntry

__all__ = ["write_formatted"]


class _NoImage(Exception):
    """This entry's photo cannot be had; the message says why."""


def write_formatted(
    store: Store,
    info: SnapshotInfo,
    writer: EntryWriter,
    *,
    images: LabelStudioAPI | None,
    scratch_dir: Path,
    on_entry: Callable[[bool], None] | None = None,
) -> SnapshotInfo:
    """Write the entries ``info`` pinned into ``writer``; returns ``info`` with the entries
    written and every failure (``info``'s and this format's), by task id, for the sidecar.

    ``images``: where photos come from (``None``: the format needs none); ``on_entry(failed)``
    is called once per entry.

    Raises:
        StoreError: the snapshot outlived the store's grace period, or an entry is unreadable.
        LabelStudioUnavailable, LabelStudioAuthError: no photo can be downloaded.
        SnapshotError: the output cannot be written.
    """
    written: dict[int, str] = {}
    failures = list(info.failures)
    with writer as sink:
        for task_id, stored in store.snapshot_entries(info):
            try:
                with tempfile.TemporaryDirectory(dir=scratch_dir) as folder:
                    image = _image(images, info.project, task_id, stored, Path(folder))
                    sink.add(_entry(stored), image)  # the photo is read before add returns
                written[task_id] = stored.key
            except (_NoImage, ImageError) as exc:
                failures.append(Failure(task_id, stored.key, failure_message(task_id, exc)))
            if on_entry:
                on_entry(task_id not in written)
            del stored  # one decoded entry at a time
    failures.sort(key=lambda failure: failure.task_id or 0)
    return dataclasses.replace(info, keys=written, failures=failures)


def _image(
    images: LabelStudioAPI | None, project: int, task_id: int, stored: StoredEntry, folder: Path
) -> ImageInfo | None:
    if images is None:
        return None
    if stored.image_url is None:
        raise _NoImage(
            "its entry was stored before the store kept image URLs: run "
            f"`ls-panoptic resync --project {project} --rebuild` once"
        )
    try:
        return images.image_info(stored.image_url, folder, task_id=task_id)
    except (LabelStudioUnavailable, LabelStudioAuthError):
        raise
    except LabelStudioError as exc:  # refused by the policy, not found...: this task only
        raise _NoImage(str(exc)) from None


def _entry(stored: StoredEntry) -> Entry:
    return Entry(stored.key, stored.panoptic_mask, stored.inst2class, stored.meta)

"""A resync converting from a real Label Studio 1.23.2's task listing (issue 14, item 2).

The first resync of a project converts every task from the listing (no pull); its store must
be the one pulls of the same tasks make, bit for bit, and the batch conversion of a fresh
export. Later resyncs list only task stamps: edits, deletions and new tasks made without any
webhook are found by the stamps alone and pulled, and the store still equals the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devstack.labelstudio import LabelStudioServer
from worker import reconcile

from ._sync_helpers import LiveProject, open_live_project, service_settings
from .lsclient import LabelStudioClient
from .scene import EXIF_JPEG, PLAIN_JPEG, PNG, SKIPPED_ONLY, make_images

pytestmark = pytest.mark.e2e


@pytest.fixture
def live(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[LiveProject]:
    settings = service_settings(redis_url, label_studio)
    with open_live_project(
        label_studio, ls_client, settings, redis_client, tmp_path, f"listing {tmp_path.name}"
    ) as project:
        project.upload(make_images())
        yield project


def stored(live: LiveProject) -> dict[int, Any]:
    """Each task's entry (key, mask bytes, inst2class, provenance) or state, as stored."""
    store, project = live.rt.store, live.project
    found: dict[int, Any] = {}
    for state in store.states(project):
        entry = store.get_entry(project, state.task_id)
        found[state.task_id] = (
            state.status, state.key, state.annotation_id, state.error, state.error_fingerprint,
            None if entry is None else
            (entry.key, entry.panoptic_mask.tobytes(), entry.inst2class, entry.meta),
        )  # fmt: skip
    return found


def test_a_first_resync_converts_from_the_listing_what_pulls_make(live: LiveProject) -> None:
    first = live.annotate(PNG, 1, 0)
    live.annotate(PNG, 2, 1)  # two annotations: an agreement record too
    live.annotate(EXIF_JPEG, 3, 2)
    live.annotate(PLAIN_JPEG, 4, 3)
    live.annotate(PLAIN_JPEG, 5, 0, label="weed")  # the newest fails: not in the label set
    live.annotate(SKIPPED_ONLY, 6, 0, skipped=True)

    summary = reconcile.resync(live.rt, live.project)
    assert (summary["quick"], summary["converted"], summary["enqueued"]) == (False, 3, 0)
    live.run_jobs()
    from_listing = stored(live)
    agreement = live.rt.store.agreement(live.project)
    live.assert_store_equals_batch("listing", failed=frozenset({PLAIN_JPEG}))

    live.rt.redis.flushdb()
    reconcile.refresh_project(live.rt, live.project)
    live.rt.dispatcher.sync_tasks(live.project, sorted(from_listing))
    live.run_jobs()
    assert stored(live) == from_listing
    assert live.rt.store.agreement(live.project) == agreement

    assert not reconcile.resync(live.rt, live.project)["to_sync"]  # a full listing again
    # lost webhooks: an annotation edited, another deleted
    live.update(PNG, first, 7, 2)
    jpeg = live.tasks[EXIF_JPEG]
    (annotation,) = live.annotation_ids(jpeg)
    live.delete(f"/api/annotations/{annotation}/")
    summary = reconcile.resync(live.rt, live.project)
    assert summary["quick"] and summary["to_sync"] == 2
    live.run_jobs()
    live.assert_store_equals_batch("stamps", failed=frozenset({PLAIN_JPEG}))
    again = reconcile.resync(live.rt, live.project)  # nothing changed: nothing to do
    assert (again["quick"], again["to_sync"]) == (True, 0)

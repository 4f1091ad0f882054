"""``GET /projects/<id>/entries/<task>/preview.png`` against a real Redis: the stored entry
drawn, each segment in its class's hue, sized as asked, behind API_TOKEN (the shared ``client``
and ``store`` of tests/conftest.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from ls_panoptic.labels import labelset_from_config
from ls_panoptic.model import Entry
from ls_panoptic.preview import render_preview
from tests.service import API, HOOK
from worker.store import Store

P, TASK = 5, 12
CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="tag" toName="image"><Label value="leaf"/><Label value="stem"/></BrushLabels>
</View>"""
LABELS = labelset_from_config(CONFIG)
T1 = "2024-05-01T10:00:01Z"


def stored_entry(store: Store, height: int = 300, width: int = 400) -> Entry:
    """Background, a leaf on the left half, a stem in the bottom right corner."""
    mask = np.full((height, width), 3, dtype=np.uint32)
    mask[:, : width // 2] = 1
    mask[height // 2 :, 3 * width // 4 :] = 2
    inst2class = {1: 0, 2: 1, 3: LABELS.background_id}
    entry = Entry("plant.png", mask, inst2class, {"task_id": TASK, "annotation_id": 7})
    store.set_project(P, CONFIG, LABELS.id2label)
    assert store.put_entry(P, TASK, entry, T1)
    return entry


def png(answer_data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(answer_data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def test_the_preview_draws_the_stored_entry_with_its_legend(
    client: FlaskClient, store: Store
) -> None:
    entry = stored_entry(store)
    answer = client.get(f"/projects/{P}/entries/{TASK}/preview.png", headers=API)
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    assert answer.headers["Cache-Control"] == "no-store"
    got = png(answer.data)
    want = render_preview(
        entry.panoptic_mask, entry.inst2class, LABELS.background_id, None, LABELS.id2label
    )
    np.testing.assert_array_equal(got, np.asarray(want))  # the same picture as `convert --preview`
    assert got.shape[1] == 400 and got.shape[0] > 300  # the mask, and the legend under it
    leaf, stem = got[150, 100], got[250, 350]
    assert not np.array_equal(leaf, stem)  # two classes, two hues


def test_size_samples_the_mask_down_to_the_longest_side(client: FlaskClient, store: Store) -> None:
    stored_entry(store, height=1500, width=2000)
    default = png(client.get(f"/projects/{P}/entries/{TASK}/preview.png", headers=API).data)
    assert default.shape[1] == 1000  # every 2nd column: at most 1024 wide
    small = png(client.get(f"/projects/{P}/entries/{TASK}/preview.png?size=200", headers=API).data)
    assert small.shape[1] == 200
    big = png(client.get(f"/projects/{P}/entries/{TASK}/preview.png?size=4000", headers=API).data)
    assert big.shape[1] == 2000  # never sampled up


@pytest.mark.parametrize(
    "size", ["0", "15", "16385", "big", "-5", "1e3", "9" * 5000, "\u00b2", "\u0661\u0660\u0660"]
)
def test_an_unusable_size_is_400_naming_it(client: FlaskClient, store: Store, size: str) -> None:
    stored_entry(store)
    answer = client.get(f"/projects/{P}/entries/{TASK}/preview.png?size={size}", headers=API)
    assert answer.status_code == 400
    assert answer.json is not None and "'size'" in answer.json["message"]


def test_a_task_without_an_entry_is_404_pointing_at_entries(
    client: FlaskClient, store: Store
) -> None:
    stored_entry(store)
    store.record_error(P, 99, "task 99: broken", T1)
    answer = client.get(f"/projects/{P}/entries/99/preview.png", headers=API)
    assert answer.status_code == 404
    assert answer.json is not None and f"/projects/{P}/entries" in answer.json["message"]
    unknown = client.get("/projects/77/entries/1/preview.png", headers=API)
    assert unknown.status_code == 404
    assert unknown.json is not None and "resync" in unknown.json["message"]


def test_the_preview_needs_the_api_token(client: FlaskClient, store: Store) -> None:
    stored_entry(store)
    path = f"/projects/{P}/entries/{TASK}/preview.png"
    assert client.get(path).status_code == 401
    assert client.get(path, headers=HOOK).status_code == 401

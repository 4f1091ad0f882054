"""The review page through Flask's client against a real Redis: the token (HTTP Basic, as a
browser sends it), the grid's rows, filters and counts, the live changes, thumbnails drawn over
the photo from LS_PANOPTIC_IMAGES_DIR, the detail view, and the assets shipped in the package."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image

from backend.app import create_app
from ls_panoptic.model import Entry
from tests.service import API_TOKEN, basic, bearer
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

P = 4
CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="tag" toName="image"><Label value="leaf"/><Label value="stem"/>'
    "</BrushLabels></View>"
)
ID2LABEL = {0: "leaf", 1: "stem", 2: "background"}
AUTH = basic(API_TOKEN, user="anyone")


def _entry(task: int, classes: list[int]) -> Entry:
    mask = np.full((60, 80), 1, dtype=np.uint32)  # instance 1: background
    for i, _ in enumerate(classes):
        mask[10 + 10 * i : 18 + 10 * i, 10:70] = i + 2
    inst2class = {1: 2, **{i + 2: c for i, c in enumerate(classes)}}
    meta = {"task_id": task, "annotation_id": 50 + task, "completed_by": 3,
            "updated_at": "2024-03-02T10:11:12Z", "regions": {"brush": len(classes)},
            "warnings": ["1 region hidden by later regions: r7"]}  # fmt: skip
    return Entry(f"photo{task}.jpg", mask, inst2class, meta)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for task in (1, 2):
        Image.new("RGB", (800, 600), (20, 200, 20)).save(folder / f"photo{task}.jpg")
    return folder


@pytest.fixture
def page(settings: Settings, redis_client: redis.Redis, images: Path) -> FlaskClient:
    configured = dataclasses.replace(
        settings, images_dir=images, label_studio_url=None, label_studio_api_key=None
    )
    return create_app(configured, redis_client).test_client()


@pytest.fixture
def filled(store: Store) -> Store:
    store.set_project(P, CONFIG, ID2LABEL)
    store.put_entry(
        P,
        1,
        _entry(1, [0, 0]),
        "2024-05-01T00:00:01Z",
        image_url="/data/upload/4/0a1b2c3d-photo1.jpg",
    )
    store.put_entry(
        P, 2, _entry(2, [1]), "2024-05-01T00:00:01Z", image_url="/data/upload/4/0a1b2c3d-photo2.jpg"
    )
    store.record_error(P, 3, "task 3: label 'cat' is not in the label set", "2024-05-01T00:00:01Z")
    store.mark_empty(P, 5, "2024-05-01T00:00:01Z")
    return store


def test_the_page_asks_a_browser_for_the_token(page: FlaskClient, filled: Store) -> None:
    answer = page.get(f"/projects/{P}/review")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert page.get(f"/projects/{P}/review", headers=basic("wrong")).status_code == 401
    for path in ("/review/changes", "/review/1", "/review/1/thumb.jpg"):
        assert page.get(f"/projects/{P}{path}").status_code == 401
    assert page.get(f"/projects/{P}/review", headers=bearer(API_TOKEN)).status_code == 200
    assert page.get(f"/projects/{P}/review", headers=AUTH).status_code == 200


def test_the_grid_lists_every_task_with_its_status_and_counts(
    page: FlaskClient, filled: Store
) -> None:
    html = page.get(f"/projects/{P}/review", headers=AUTH).get_data(as_text=True)
    assert [int(t) for t in re.findall(r'id="task-(\d+)"', html)] == [1, 2, 3, 5]
    assert "label &#39;cat&#39; is not in the label set" in html
    assert "leaf&nbsp;\u00d7&nbsp;2" in html and "stem&nbsp;\u00d7&nbsp;1" in html
    assert 'data-count-status="ok">2<' in html and 'data-count-status="error">1<' in html
    assert 'data-count-class="0">1<' in html  # tasks with a leaf
    assert "user 3" in html and "2024-03-02 10:11" in html
    assert f"/projects/{P}/review/1/thumb.jpg?v=" in html
    # filtered: errors only; class stem only
    html = page.get(f"/projects/{P}/review?status=error", headers=AUTH).get_data(as_text=True)
    assert re.findall(r'id="task-(\d+)"', html) == ["3"]
    html = page.get(f"/projects/{P}/review?class=1", headers=AUTH).get_data(as_text=True)
    assert re.findall(r'id="task-(\d+)"', html) == ["2"]
    html = page.get(f"/projects/{P}/review?per_page=2&page=2", headers=AUTH).get_data(as_text=True)
    assert re.findall(r'id="task-(\d+)"', html) == ["3", "5"]
    assert page.get(f"/projects/{P}/review?status=bogus", headers=AUTH).status_code == 400
    assert page.get(f"/projects/{P}/review?since=yesterday", headers=AUTH).status_code == 400


def test_the_link_to_label_studio_opens_the_task(
    settings: Settings, redis_client: redis.Redis, filled: Store
) -> None:
    configured = dataclasses.replace(settings, label_studio_url="http://ls.example:8080")
    html = create_app(configured, redis_client).test_client().get(
        f"/projects/{P}/review", headers=AUTH
    ).get_data(as_text=True)  # fmt: skip
    assert f'href="http://ls.example:8080/projects/{P}/data?task=3"' in html


def test_changes_give_the_cards_written_after_the_cursor(page: FlaskClient, filled: Store) -> None:
    html = page.get(f"/projects/{P}/review", headers=AUTH).get_data(as_text=True)
    seq = int(re.search(r'data-seq="(\d+)"', html).group(1))  # type: ignore[union-attr]
    body = page.get(f"/projects/{P}/review/changes?since={seq}", headers=AUTH).get_json()
    assert body["cards"] == [] and body["seq"] == seq
    filled.put_entry(
        P, 3, _entry(3, [1]), "2024-05-01T00:00:02Z", image_url="/data/upload/4/0a1b2c3d-photo1.jpg"
    )
    body = page.get(f"/projects/{P}/review/changes?since={seq}", headers=AUTH).get_json()
    (card,) = body["cards"]
    assert card["task_id"] == 3 and card["row"]["status"] == "ok"
    assert 'id="task-3"' in card["html"] and "status-ok" in card["html"]
    assert body["status_counts"] == {"empty": 1, "ok": 3} and body["seq"] > seq


def test_thumbnail_draws_the_entry_over_the_photo(
    page: FlaskClient, filled: Store, redis_client: redis.Redis
) -> None:
    html = page.get(f"/projects/{P}/review", headers=AUTH).get_data(as_text=True)
    url = re.search(rf'src="(/projects/{P}/review/1/thumb\.jpg\?v=[0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
    answer = page.get(url.replace("&amp;", "&"), headers=AUTH)
    assert answer.status_code == 200 and answer.mimetype == "image/jpeg"
    assert "immutable" in answer.headers["Cache-Control"]
    picture = np.asarray(Image.open(io.BytesIO(answer.data)).convert("RGB"), dtype=int)
    assert picture.shape[:2] == (60, 80)  # the mask's size (side 320 > 80: not sampled)
    # background shows the photo (green); a leaf segment is tinted with the leaf's colour
    assert abs(picture[50, 5] - (20, 200, 20)).max() < 20
    leaf = (0xE6, 0x9F, 0x00)
    tinted = (np.array((20, 200, 20)) + np.array(leaf)) / 2
    assert abs(picture[14, 40] - tinted).max() < 20
    assert list(redis_client.scan_iter("*:thumb:*"))  # cached
    assert page.get(f"/projects/{P}/review/5/thumb.jpg", headers=AUTH).status_code == 404


def test_detail_view_names_segments_and_warnings(page: FlaskClient, filled: Store) -> None:
    html = page.get(f"/projects/{P}/review/1", headers=AUTH).get_data(as_text=True)
    assert "1 region hidden by later regions: r7" in html
    assert '"area": 480' in html or '"area":480' in html  # 8 x 60 pixels per leaf
    assert 'id="next-task" href="/projects/4/review/2"' in html
    ids = page.get(f"/projects/{P}/review/1/ids.png", headers=AUTH)
    decoded = np.asarray(Image.open(io.BytesIO(ids.data)).convert("RGB"), dtype=int)
    assert decoded[14, 40].tolist() == [0, 0, 2] and decoded[0, 0].tolist() == [0, 0, 1]
    photo = page.get(f"/projects/{P}/review/1/photo.jpg", headers=AUTH)
    assert Image.open(io.BytesIO(photo.data)).size == (80, 60)
    assert page.get(f"/projects/{P}/review/999", headers=AUTH).status_code == 404


def test_assets_ship_with_the_package(page: FlaskClient, filled: Store) -> None:
    html = page.get(f"/projects/{P}/review", headers=AUTH).get_data(as_text=True)
    for asset in re.findall(r'(?:href|src)="(/projects/review-static/[^"]+)"', html):
        assert page.get(asset, headers=AUTH).status_code == 200
    assert "http://" not in html.split("<main")[0] and "https://" not in html


def test_the_detail_view_moves_through_the_grids_list_and_back_to_its_page(
    page: FlaskClient, filled: Store
) -> None:
    """The grid's filters and sort go with the card's link; next/previous follow that list;
    the way back leads to the grid page holding the task, its card named for focus."""
    filled.record_error(P, 7, "task 7: bad", "2024-05-01T00:00:01Z")
    filled.record_error(P, 9, "task 9: bad", "2024-05-01T00:00:01Z")
    html = page.get(f"/projects/{P}/review?status=error&desc=1&per_page=2", headers=AUTH)
    text = html.get_data(as_text=True)
    assert re.findall(r'id="task-(\d+)"', text) == ["9", "7"]  # page 1 of 2: 9, 7 | 3
    assert 'data-detail="/projects/4/review/9?status=error&amp;desc=1&amp;per_page=2"' in text
    detail = page.get(f"/projects/{P}/review/3?status=error&desc=1&per_page=2", headers=AUTH)
    text = detail.get_data(as_text=True)
    assert 'id="prev-task" href="/projects/4/review/7?status=error&amp;desc=1&amp;per_page=2"' in (
        text
    )
    assert 'id="next-task"' not in text and "3 of 3" in text  # the last of the list
    back = "/projects/4/review?status=error&amp;desc=1&amp;per_page=2&amp;page=2#task-3"
    assert f'data-grid="{back}"' in text
    # unfiltered: every task by id, page 1 needs no parameter
    text = page.get(f"/projects/{P}/review/2", headers=AUTH).get_data(as_text=True)
    assert 'id="prev-task" href="/projects/4/review/1"' in text
    assert 'id="next-task" href="/projects/4/review/3"' in text
    assert 'data-grid="/projects/4/review#task-2"' in text
    # the live changes render the cards with the grid's query too
    filled.record_error(P, 1, "task 1: broken", "2024-05-01T00:00:02Z")
    listed = "list=status%3Derror%26desc%3D1%26since%3D2024-01-01"
    body = page.get(f"/projects/{P}/review/changes?since=0&{listed}", headers=AUTH)
    card = next(c for c in body.get_json()["cards"] if c["task_id"] == 1)
    assert body.get_json()["listed"] == 4 and body.get_json()["total"] == 6  # errors: 1 3 7 9
    assert (
        'data-detail="/projects/4/review/1?status=error&amp;since=2024-01-01&amp;desc=1"'
        in card["html"]
    )
    assert page.get(f"/projects/{P}/review/2?status=bogus", headers=AUTH).status_code == 400
    # a bad list is a 400 like a bad grid query; unknown or garbled parameters are ignored
    changes = f"/projects/{P}/review/changes?since=0&list="
    assert page.get(changes + "class%3Dleaf", headers=AUTH).status_code == 400
    assert page.get(changes + "%ZZ%26%3D%3D&x", headers=AUTH).status_code == 200


def test_segment_areas_are_cached_by_entry_version(
    page: FlaskClient, filled: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    text = page.get(f"/projects/{P}/review/1", headers=AUTH).get_data(as_text=True)
    assert '"area": 480' in text
    (cached,) = redis_client.keys(keys.project_prefix(P) + "areas:1:*")
    assert b'"2":480' in redis_client.get(cached)  # type: ignore[operator]
    # the next view reads the cache, not the mask: a changed cached value shows
    redis_client.set(cached, '{"1":4320,"2":7,"3":480}')
    text = page.get(f"/projects/{P}/review/1", headers=AUTH).get_data(as_text=True)
    assert '"area": 7' in text


def test_while_another_process_builds_the_index_the_page_says_how_far_it_is(
    page: FlaskClient, filled: Store, redis_client: redis.Redis, keys: Keys
) -> None:
    assert page.get(f"/projects/{P}/review", headers=AUTH).status_code == 200
    redis_client.set(keys.review_building(P), "2500/10000", ex=60)
    for path in ("/review", "/review/1", "/review?status=error"):
        answer = page.get(f"/projects/{P}{path}", headers=AUTH)
        text = answer.get_data(as_text=True)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert "Indexing 2,500 of 10,000 tasks" in text and 'id="task-' not in text
    body = page.get(f"/projects/{P}/review/changes?since=0", headers=AUTH)
    assert body.status_code == 503
    assert body.get_json() == {"indexing": {"done": 2500, "total": 10000}}
    redis_client.delete(keys.review_building(P))
    text = page.get(f"/projects/{P}/review", headers=AUTH).get_data(as_text=True)
    assert re.findall(r'id="task-(\d+)"', text) == ["1", "2", "3", "5"]

"""The review page's list in a real browser: the backend served for real (``ls-panoptic serve``,
gunicorn) on the test Redis, states written by the real ``Store``, Debian's chromium through
Playwright. No Label Studio: what is checked is what the page does with the store's states
(``test_review_e2e.py`` drives the whole chain from Label Studio).

1. The detail view's ``j``/``k`` move through the grid's filtered, sorted list, across its pages,
   and ``u``/``Esc`` go back to the grid page holding the task, its card focused.
2. A filtered grid follows the store live: a task that stops passing the filter leaves the page,
   one that starts passing it appears in its place, and the counts follow, without a reload.
3. While another process builds the index, an open grid and a new one say how far it is (never
   a partly built index), and both come back to the grid by themselves once it is built.

Screenshots: ``test-artifacts/review/5-detail-in-filtered-list.png``,
``6-grid-filtered-live.png``, ``7-indexing.png`` (git-ignored), to be looked at.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from ls_panoptic.model import Entry
from tests.service import API_TOKEN
from worker.keys import Keys
from worker.settings import Settings
from worker.store import Store

from ._services import REPO, backend_process, free_port
from .editor import browser_problem, find_chromium

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - reported by browser_problem
    sync_playwright = None  # type: ignore[assignment]

ARTIFACTS = REPO / "test-artifacts" / "review"
P = 6
CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="tag" toName="image"><Label value="leaf"/><Label value="stem"/>'
    "</BrushLabels></View>"
)
ID2LABEL = {0: "leaf", 1: "stem", 2: "background"}
#: tasks 1-12; these are in error, the others ok
ERRORS = (3, 5, 8, 10, 12)
#: seconds a store write may take to show on the open page (it polls every second)
SHOWN_WITHIN_MS = 10_000


def _entry(task: int, classes: list[int]) -> Entry:
    mask = np.ones((120, 160), dtype=np.uint32)  # instance 1: background
    for i, _ in enumerate(classes):
        mask[15 + 30 * i : 40 + 30 * i, 20 + 10 * task : 80 + 5 * task] = i + 2
    inst2class = {1: 2, **{i + 2: c for i, c in enumerate(classes)}}
    meta = {"task_id": task, "annotation_id": 100 + task, "completed_by": 1 + task % 2,
            "updated_at": f"2024-03-02T10:{task:02d}:00Z", "warnings": []}  # fmt: skip
    return Entry(f"photo{task}.jpg", mask, inst2class, meta)


def _put(store: Store, task: int, classes: list[int], stamp: str) -> None:
    store.put_entry(P, task, _entry(task, classes), stamp,
                    image_url=f"/data/upload/{P}/0a1b2c3d-photo{task}.jpg")  # fmt: skip


def _fail(store: Store, task: int, stamp: str) -> None:
    message = f"task {task}: region r{task}: label 'weed' is not in the label set"
    store.record_error(P, task, message, stamp, key=f"photo{task}.jpg")


@pytest.fixture
def backend(settings: Settings, store: Store, tmp_path: Path) -> Iterator[str]:
    """The backend as a process on the test Redis; project P with tasks 1-12 in the store."""
    problem = browser_problem()
    if problem:
        pytest.skip(problem)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for task in range(1, 13):
        pixels = rng.integers(40, 220, (3, 4, 3), dtype=np.uint8)
        photo = Image.fromarray(pixels, "RGB").resize((640, 480), Image.Resampling.BICUBIC)
        photo.save(images / f"photo{task}.jpg", quality=85)
    store.set_project(P, CONFIG, ID2LABEL)
    for task in range(1, 13):
        if task in ERRORS:
            _fail(store, task, "2024-05-01T00:00:01Z")
        else:
            _put(store, task, [task % 2] * (1 + task % 3), "2024-05-01T00:00:01Z")
    # Label Studio's address only names the links; photos come from the folder
    served = dataclasses.replace(
        settings, label_studio_url="http://127.0.0.1:9", label_studio_api_key="unused"
    )
    port = free_port()
    extra = {"LS_PANOPTIC_IMAGES_DIR": str(images)}
    with backend_process(served, port, tmp_path / "backend.log", extra):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Browser) -> Page:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900},
        http_credentials={"username": "reviewer", "password": API_TOKEN},
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _cards(page: Page) -> list[int]:
    ids: list[str] = page.eval_on_selector_all(".card", "(cs) => cs.map((c) => c.dataset.task)")
    return [int(t) for t in ids]


def _wait_url(page: Page, tail: str) -> None:
    """Until the page's URL (query and fragment included) ends with ``tail``."""
    page.wait_for_url(lambda url: url.endswith(tail))


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_next_and_previous_follow_the_grids_filtered_list_and_back_to_its_page(
    backend: str, browser: Browser
) -> None:
    page = _page(browser)
    query = "status=error&desc=1&per_page=2"
    page.goto(f"{backend}/projects/{P}/review?{query}")
    assert _cards(page) == [12, 10]  # errors, newest id first, two a page: 12 10 | 8 5 | 3
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    _wait_url(page, f"/review/12?{query}")
    assert page.inner_text("#place") == "1 of 5 (filtered)"
    for task in (10, 8, 5):  # j: 10, then 8 and 5 on the grid's second page; no ok task
        page.keyboard.press("j")
        _wait_url(page, f"/review/{task}?{query}")
    assert page.inner_text("#place") == "4 of 5 (filtered)"
    assert "weed" in page.inner_text(".error.big")
    page.keyboard.press("k")
    _wait_url(page, f"/review/8?{query}")
    page.wait_for_selector("#detail", state="attached")
    _shot(page, "5-detail-in-filtered-list")
    page.keyboard.press("u")  # back: the grid's page 2, which holds task 8, its card focused
    _wait_url(page, f"/review?{query}&page=2#task-8")
    assert _cards(page) == [8, 5]
    page.wait_for_selector("#task-8.focused")
    page.keyboard.press("j")  # the keyboard goes on from the focused card
    assert page.get_attribute(".card.focused", "id") == "task-5"
    page.keyboard.press("Enter")
    _wait_url(page, f"/review/5?{query}")
    page.keyboard.press("j")
    _wait_url(page, f"/review/3?{query}")
    assert page.locator("#next-task").count() == 0  # the end of the list
    page.keyboard.press("Escape")
    _wait_url(page, f"/review?{query}&page=3#task-3")
    page.wait_for_selector("#task-3.focused")
    # unfiltered, by id: the whole project, page 1 needs no parameter
    page.goto(f"{backend}/projects/{P}/review/4")
    page.keyboard.press("j")
    _wait_url(page, "/review/5")
    page.keyboard.press("u")
    _wait_url(page, f"/projects/{P}/review#task-5")
    page.wait_for_selector("#task-5.focused")


def test_a_filtered_grid_follows_the_store_live(
    backend: str, browser: Browser, store: Store
) -> None:
    page = _page(browser)
    page.goto(f"{backend}/projects/{P}/review?status=error")
    assert _cards(page) == list(ERRORS)
    assert page.inner_text("[data-count-status=error]") == "5"
    assert page.inner_text("[data-count-status=ok]") == "7"
    assert page.inner_text("#total") == "5"
    marker = page.evaluate("() => (window.__kept = Math.random())")

    _put(store, 5, [1], "2024-05-01T00:00:02Z")  # fixed: no longer an error
    page.wait_for_selector("#task-5", state="detached", timeout=SHOWN_WITHIN_MS)
    page.wait_for_function(
        "() => document.querySelector('[data-count-status=error]').textContent === '4'"
        " && document.querySelector('#total').textContent === '4'",
        timeout=SHOWN_WITHIN_MS,
    )
    assert page.inner_text("[data-count-status=ok]") == "8"
    _fail(store, 4, "2024-05-01T00:00:02Z")  # an ok task fails: its card joins, in id order
    page.wait_for_selector("#task-4.status-stale", timeout=SHOWN_WITHIN_MS)
    assert _cards(page) == [3, 4, 8, 10, 12]
    page.wait_for_function(
        "() => document.querySelector('#total').textContent === '5'", timeout=SHOWN_WITHIN_MS
    )
    assert page.inner_text("[data-count-status=error]") == "5"
    assert "weed" in page.inner_text("#task-4 .error")
    # the joined card's link leads into this list: its next task is the list's next (8)
    detail = page.get_attribute("#task-4", "data-detail")
    assert detail == f"/projects/{P}/review/4?status=error"
    store.delete_tasks(P, [10], "2024-05-01T00:00:03Z")  # deleted in Label Studio: it goes
    page.wait_for_selector("#task-10", state="detached", timeout=SHOWN_WITHIN_MS)
    _put(store, 7, [0], "2024-05-01T00:00:03Z")  # an ok task changing stays off this page
    page.wait_for_function(
        "() => document.querySelector('[data-count-status=error]').textContent === '4'",
        timeout=SHOWN_WITHIN_MS,
    )
    page.wait_for_timeout(1500)  # a poll after the last write
    assert _cards(page) == [3, 4, 8, 12]
    assert page.evaluate("() => window.__kept") == marker  # never reloaded
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumb img')]"
        ".every((i) => i.complete && i.naturalWidth > 0)"
    )
    _shot(page, "6-grid-filtered-live")

    # a class filter follows too: task 4 had leaves only; fixed with a stem it joins "stem"
    page.goto(f"{backend}/projects/{P}/review?class=1")
    before = _cards(page)
    assert 4 not in before
    marker = page.evaluate("() => (window.__kept = Math.random())")
    _put(store, 4, [1, 0], "2024-05-01T00:00:04Z")
    page.wait_for_selector("#task-4.status-ok", timeout=SHOWN_WITHIN_MS)
    assert _cards(page) == sorted([*before, 4])
    page.click("#task-4 a.task")
    _wait_url(page, "/review/4?class=1")
    assert page.locator("#prev-task").get_attribute("href") == (
        f"/projects/{P}/review/{max(t for t in before if t < 4)}?class=1"
    )

    # sorted by last change, newest first: a task that changes moves to the top
    page.goto(f"{backend}/projects/{P}/review?sort=changed&desc=1")
    assert _cards(page)[0] == 4 and 2 in _cards(page)
    _put(store, 2, [0], "2024-05-01T00:00:05Z")
    page.wait_for_function(
        "() => document.querySelector('.card').dataset.task === '2'", timeout=SHOWN_WITHIN_MS
    )
    assert _cards(page).count(2) == 1 and _cards(page)[1] == 4


def test_while_the_index_is_built_elsewhere_pages_say_how_far_and_come_back(
    backend: str, browser: Browser, redis_client: redis.Redis, keys: Keys
) -> None:
    grid = _page(browser)
    grid.goto(f"{backend}/projects/{P}/review")
    assert len(_cards(grid)) == 12
    # another process (a first view of an older store, or `resync --rebuild`) builds the index
    redis_client.set(keys.review_building(P), "2500/10000", ex=60)
    grid.wait_for_function(
        "() => document.getElementById('live').textContent.includes('indexing 2,500 of 10,000')",
        timeout=SHOWN_WITHIN_MS,
    )
    fresh = _page(browser)
    answer = fresh.goto(f"{backend}/projects/{P}/review?status=error")
    assert answer is not None and answer.status == 503
    assert "Indexing 2,500 of 10,000 tasks" in fresh.inner_text(".indexing")
    assert _cards(fresh) == []  # nothing of a partly built index
    _shot(fresh, "7-indexing")
    redis_client.delete(keys.review_building(P))  # built: both pages come back by themselves
    fresh.wait_for_selector("#task-12", timeout=SHOWN_WITHIN_MS)
    assert _cards(fresh) == list(ERRORS)
    grid.wait_for_function(
        "() => document.getElementById('live').textContent.trim() === '● live'"
        " && document.querySelectorAll('.card').length === 12",
        timeout=SHOWN_WITHIN_MS,
    )

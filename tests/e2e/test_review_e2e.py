"""The review page as a person uses it, in Debian's chromium (Playwright), against the real Label
Studio of the e2e session, the backend and a worker as processes, and Label Studio's webhooks.

Annotate a task through Label Studio's API and watch its thumbnail appear without a reload; an
annotation with a label outside the config turns its task to ``error`` with the reason; follow
the card's link to that task in Label Studio; fix the annotation there (its API) and watch the
status turn ``ok``; upload an image and see its card; move through the grid and the detail view
with the keyboard; hover a segment.
Screenshots go to ``test-artifacts/review/`` (git-ignored), to be looked at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.labelstudio import LabelStudioServer

from ._services import REPO, backend_process, free_port, worker_process
from ._sync_helpers import (
    UNLISTED_LABEL,
    LiveProject,
    open_live_project,
    run_resync,
    served_settings,
    small_image,
)
from .editor import browser_problem, find_chromium
from .lsclient import LabelStudioClient

pytestmark = pytest.mark.e2e

try:
    from playwright.sync_api import FloatRect, Page, sync_playwright
except ImportError:  # pragma: no cover - reported by browser_problem
    sync_playwright = None  # type: ignore[assignment]

ARTIFACTS = REPO / "test-artifacts" / "review"
#: seconds an edit saved in Label Studio may take to show on the open page (goal: 1-2 s)
SHOWN_WITHIN = 10.0
NAMES = ("a.png", "b.png", "c.png")
IMAGES = [small_image(name, 320, 240, seed) for seed, name in enumerate(NAMES)]


@pytest.fixture
def served(
    label_studio: LabelStudioServer,
    ls_client: LabelStudioClient,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Iterator[tuple[LiveProject, str]]:
    """A project of three images, connected to a running backend and worker, synced once."""
    settings = served_settings(redis_url, label_studio)
    port = free_port()
    backend_url = f"http://127.0.0.1:{port}"
    title = f"review {tmp_path.name}"
    with (
        backend_process(settings, port, tmp_path / "backend.log"),
        worker_process(settings, tmp_path / "worker.log"),
        open_live_project(label_studio, ls_client, settings, redis_client, tmp_path, title) as live,
    ):
        live.connect(backend_url)
        live.upload(IMAGES)
        run_resync(live)
        yield live, backend_url


def _shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _wait(page: Page, selector: str, what: str) -> float:
    """Seconds until ``selector`` is on the page (no reload), failing after SHOWN_WITHIN."""
    started = time.monotonic()
    try:
        page.wait_for_selector(selector, timeout=SHOWN_WITHIN * 1000)
    except Exception as exc:  # playwright's TimeoutError
        pytest.fail(f"{what}: not shown within {SHOWN_WITHIN} s ({exc})", pytrace=False)
    return time.monotonic() - started


def test_review_page_follows_label_studio_in_a_browser(
    served: tuple[LiveProject, str], label_studio: LabelStudioServer
) -> None:
    problem = browser_problem()
    if problem:
        pytest.skip(problem)
    live, backend_url = served
    token = str(live.rt.settings.api_token)
    a, b, c = (live.tasks[image.name] for image in IMAGES)
    grid_url = f"{backend_url}/projects/{live.project}/review"
    assert sync_playwright is not None
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=find_chromium(), headless=True)
        try:
            # HTTP Basic as a browser keeps it once asked: any user name, the token as password
            context = browser.new_context(
                viewport={"width": 1280, "height": 900},
                http_credentials={"username": "reviewer", "password": token},
            )
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(grid_url)
            for task in (a, b, c):
                page.wait_for_selector(f"#task-{task}.status-empty")
            marker = page.evaluate("() => (window.__kept = Math.random())")

            # annotate through Label Studio's API: the webhook, the worker, the page's poll
            live.annotate("a.png", seed=11, variant=0)
            shown_ok = _wait(page, f"#task-{a}.status-ok .thumb img", "the new annotation")
            page.wait_for_function(
                f"() => document.querySelector('#task-{a} .thumb img').naturalWidth > 0"
            )
            live.annotate("b.png", seed=12, variant=1, label=UNLISTED_LABEL)
            shown_error = _wait(page, f"#task-{b}.status-error", "the failed annotation")
            assert UNLISTED_LABEL in page.inner_text(f"#task-{b} .error")
            live.annotate("c.png", seed=13, variant=2)
            _wait(page, f"#task-{c}.status-ok .thumb img", "the third annotation")
            assert page.evaluate("() => window.__kept") == marker  # never reloaded
            counts = page.inner_text(".counts")
            assert "ok 2" in counts.replace("\u2713 ", "") and "error 1" in counts.replace(
                "\u2715 ", ""
            )
            page.wait_for_function(
                "() => [...document.querySelectorAll('.thumb img')]"
                ".every((i) => i.complete && i.naturalWidth > 0)"
            )
            _shot(page, "1-grid-live")

            # keyboard: j moves to the first card, again to the second, k back; Enter opens it
            page.keyboard.press("j")
            assert page.get_attribute(".card.focused", "id") == f"task-{a}"
            page.keyboard.press("j")
            assert page.get_attribute(".card.focused", "id") == f"task-{b}"
            page.keyboard.press("k")
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/review/{a}")
            page.wait_for_selector("#detail[data-ready='1']", state="attached")
            box = page.locator("#overlay").bounding_box()
            assert box is not None
            named = _hover_a_segment(page, box)
            assert "instance" in named and " px" in named, named
            _shot(page, "2-detail")
            page.keyboard.press("j")  # next task
            page.wait_for_url(f"**/review/{b}")
            assert UNLISTED_LABEL in page.inner_text(".error.big")
            page.keyboard.press("k")
            page.wait_for_url(f"**/review/{a}")
            page.keyboard.press("Escape")
            back = f"/projects/{live.project}/review#task-{a}"  # its card focused
            page.wait_for_url(lambda url: url.endswith(back))
            page.wait_for_selector(f"#task-{a}.focused")
            marker = page.evaluate("() => (window.__kept = Math.random())")

            # follow the failed card's link into Label Studio (logged in there once)
            ls_page = context.new_page()
            ls_page.goto(f"{label_studio.url}/user/login/")
            ls_page.fill("#email", label_studio.username)
            ls_page.fill("#password", label_studio.password)
            with ls_page.expect_navigation():
                ls_page.click("button[type=submit]")
            ls_page.close()
            link = page.locator(f"#task-{b} a.ls")
            assert link.get_attribute("href") == (
                f"{label_studio.url}/projects/{live.project}/data?task={b}"
            )
            with context.expect_page() as opened:
                link.click()
            task_page = opened.value
            task_page.wait_for_function(
                "() => { const i = document.querySelector('img[alt=image]');"
                " return !!i && i.complete && i.naturalWidth > 0; }",
                timeout=60_000,
            )
            assert f"task={b}" in task_page.url
            _shot(task_page, "3-label-studio-task")
            task_page.close()

            # fix it (the annotation's labels, through Label Studio's API): the status turns ok
            (annotation,) = live.annotation_ids(b)
            live.update("b.png", annotation, seed=12, variant=1)
            shown_fixed = _wait(page, f"#task-{b}.status-ok .thumb img", "the fixed annotation")
            assert "error 0" in page.inner_text(".counts").replace("\u2715 ", "")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.thumb img')]"
                ".every((i) => i.complete && i.naturalWidth > 0)"
            )
            _shot(page, "4-grid-fixed")

            # a new task (an upload: TASKS_CREATED) gets its card, in task order
            (d,) = live.upload([small_image("d.png", 320, 240, seed=9)]).values()
            _wait(page, f"#task-{d}.status-empty", "the new task")
            cards = page.eval_on_selector_all(".card", "(cs) => cs.map((c) => c.id)")
            assert cards == [f"task-{t}" for t in (a, b, c, d)]
            assert page.evaluate("() => window.__kept") == marker
        finally:
            browser.close()
    print(
        f"review page latency (API save -> shown, poll 1 s): ok {shown_ok:.2f} s, "
        f"error {shown_error:.2f} s, fixed {shown_fixed:.2f} s"
    )


def _hover_a_segment(page: Page, box: FloatRect) -> str:
    """Move over the canvas until the page names a segment other than the background."""
    text = ""
    for fy in (0.3, 0.5, 0.7):
        for fx in (0.2, 0.35, 0.5, 0.65, 0.8):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            text = page.inner_text("#hover")
            if "instance" in text and "background" not in text:
                return text
    return text

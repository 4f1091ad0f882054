"""Label Studio 1.23.2's labeling editor driven in a real, headless Chromium: the one place that
owns the browser driver (Playwright for Python, launched on the machine's own ``chromium``;
its own browser builds are never downloaded). Driver errors become ``EditorError`` here.

Facts about the 1.23.2 editor behind the choices below (checked in Chromium 156):

- Login: ``/user/login/`` is a plain form (``#email``, ``#password``, ``button[type=submit]``);
  a refused login stays on that page.
- ``/projects/<p>/data?labeling=1&task=<t>`` opens a task in the editor. The image is
  ``img[alt=image]`` (hidden by a CSS clip; a canvas overlay with the same box paints it) and
  Konva's stage ``.konvajs-content`` takes the mouse.
- ``<Image rotateControl="true">`` adds toolbar buttons ``aria-label=rotate-left`` /
  ``rotate-right``. Rotation is a CSS ``rotate(<deg>deg)`` on the image (0, 90, 180, 270
  clockwise; one left turn shows ``270deg``), so the image's bounding box on screen is the
  turned image and tells where each image point is shown.
- The fitted image is scaled to the width of its wrapper, toolbar included, and centred in
  a narrower container: about 21 screen pixels of each side are clipped. Never aim at the edges.
- Selecting a label (``.lsf-label``) arms that control's tool (rectangle, polygon, brush).
  Playwright scrolls a clicked element into view, which can move the image: measure the image
  again after every click outside it.
- A polygon closes with a click on its first point. Submit is ``aria-label="Submit current
  annotation"``: one ``POST /api/tasks/<t>/annotations`` whose answer is the annotation.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

try:
    from playwright.sync_api import Error as _DriverError
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra is missing: launch_editor says so, collection still works
    sync_playwright = None  # type: ignore[assignment]

    class _DriverError(Exception):  # type: ignore[no-redef]
        """Stands in for Playwright's error type when Playwright is not installed."""


if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Response

__all__ = [
    "BrowserUnavailable",
    "DisplayedImage",
    "Editor",
    "EditorError",
    "Point",
    "ScreenBox",
    "browser_problem",
    "find_chromium",
    "launch_editor",
]

Point = tuple[float, float]
"""``(x, y)`` in CSS pixels of the page's viewport."""

#: browser window (CSS pixels): wide enough for the side panels, tall enough that the labels
#: stay below a turned image without scrolling
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1000, 1300
#: milliseconds any one driver action may take (a task page loads in 2-4 s here)
ACTION_TIMEOUT_MS = 20_000
#: seconds the image's box must hold still after a layout change before it is trusted
SETTLE_SECONDS = 3.0
#: pause between polygon clicks (milliseconds): quicker clicks risk a double click
CLICK_PAUSE_MS = 120
#: mouse steps per drag, so that Konva sees a stroke and not a jump
DRAG_STEPS = 12
CHROMIUM_NAMES = ("chromium", "chromium-browser")


class EditorError(RuntimeError):
    """The browser could not do what was asked of Label Studio's editor."""


class BrowserUnavailable(EditorError):
    """Playwright is not installed, or there is no chromium on the PATH."""


@dataclass(frozen=True)
class ScreenBox:
    """A bounding box on the page, CSS pixels."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class DisplayedImage:
    """Where the editor shows the image: its on-screen box and its turn (clockwise degrees)."""

    box: ScreenBox
    rotation: int

    def screen_point(self, fx: float, fy: float) -> Point:
        """Where the point at fractions ``(fx, fy)`` of the UNROTATED image is shown."""
        turned = {
            0: (fx, fy),
            90: (1 - fy, fx),  # a right turn puts the image's top-left corner at top right
            180: (1 - fx, 1 - fy),
            270: (fy, 1 - fx),
        }[self.rotation]
        return (
            self.box.left + turned[0] * self.box.width,
            self.box.top + turned[1] * self.box.height,
        )


def find_chromium() -> str | None:
    """The machine's chromium (Debian's package), or ``None``."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def browser_problem(executable: str | None = None) -> str | None:
    """Why no editor can be launched with ``executable`` (default: the chromium on the PATH):
    Playwright or the browser is missing; ``None`` when nothing is."""
    if sync_playwright is None:
        return "Playwright is not installed (pip install -e '.[test]')"
    if (executable or find_chromium()) is None:
        return "no chromium on the PATH (run .ci/install-chromium: Debian's chromium package)"
    return None


_IMAGE_READY_JS = """() => {
  const img = document.querySelector('img[alt=image]');
  return !!img && img.complete && img.naturalWidth > 0
    && !!document.querySelector('.konvajs-content');
}"""
_IMAGE_STATE_JS = """() => {
  const img = document.querySelector('img[alt=image]');
  const b = img.getBoundingClientRect();
  return [b.x, b.y, b.width, b.height, img.style.transform || ''];
}"""
_ROTATE = re.compile(r"rotate\((-?[\d.]+)deg\)")


class Editor:
    """One logged-in browser page on a Label Studio server."""

    def __init__(self, page: Page, base_url: str) -> None:
        self._page = page
        self._url = base_url.rstrip("/")
        self._task_id: int | None = None

    def login(self, username: str, password: str) -> None:
        with _driving("log in"):
            self._page.goto(f"{self._url}/user/login/")
            self._page.fill("#email", username)
            self._page.fill("#password", password)
            with self._page.expect_navigation():  # to / when accepted, the form again if not
                self._page.click("button[type=submit]")
        if "/user/login" in self._page.url:
            raise EditorError(f"log in as {username}: Label Studio kept the login page")

    def open_task(self, project_id: int, task_id: int) -> None:
        """Open the task in the editor and wait until its image is shown."""
        with _driving(f"open task {task_id}"):
            self._page.goto(f"{self._url}/projects/{project_id}/data?labeling=1&task={task_id}")
            self._page.wait_for_function(_IMAGE_READY_JS)
        self._task_id = task_id
        self.displayed_image()  # waits for the first layout to settle

    def rotate(self, direction: Literal["left", "right"]) -> DisplayedImage:
        """Turn the view with the toolbar button; returns the image as then shown."""
        before = self.displayed_image().rotation
        wanted = (before + (90 if direction == "right" else -90)) % 360
        with _driving(f"rotate {direction}"):
            self._page.click(f"button[aria-label=rotate-{direction}]")
        shown = self.displayed_image()
        deadline = time.monotonic() + SETTLE_SECONDS
        while shown.rotation != wanted and time.monotonic() < deadline:
            shown = self.displayed_image()
        if shown.rotation != wanted:
            raise EditorError(f"rotate {direction}: the view shows {shown.rotation}, not {wanted}")
        return shown

    def displayed_image(self) -> DisplayedImage:
        """The image's box and turn once two reads 100 ms apart agree (layout settled)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        last = self._image_state()
        while time.monotonic() < deadline:
            with _driving("wait for the layout"):
                self._page.wait_for_timeout(100)
            now = self._image_state()
            if now == last:
                return now
            last = now
        raise EditorError(f"the image did not hold still within {SETTLE_SECONDS} s: {last}")

    def _image_state(self) -> DisplayedImage:
        with _driving("measure the image"):
            x, y, width, height, transform = self._page.evaluate(_IMAGE_STATE_JS)
        turns = _ROTATE.findall(transform)
        rotation = round(float(turns[0])) % 360 if turns else 0
        return DisplayedImage(ScreenBox(x, y, width, height), rotation)

    def select_label(self, label: str) -> None:
        """Click the label: it arms its control's tool (may scroll the page)."""
        with _driving(f"select label {label!r}"):
            self._page.locator(".lsf-label", has_text=re.compile(rf"^{re.escape(label)}")).click()

    def drag(self, path: Sequence[Point]) -> None:
        """Press at the first point, move through the others, release at the last."""
        with _driving("drag the mouse"):
            mouse = self._page.mouse
            mouse.move(*path[0])
            mouse.down()
            for point in path[1:]:
                mouse.move(*point, steps=DRAG_STEPS)
            mouse.up()

    def click_polygon(self, points: Sequence[Point]) -> None:
        """Click each vertex, then the first again to close the polygon."""
        with _driving("click a polygon"):
            for point in [*points, points[0]]:
                self._page.mouse.click(*point)
                self._page.wait_for_timeout(CLICK_PAUSE_MS)

    def screenshot(self) -> bytes:
        """The viewport as PNG bytes (one image pixel per CSS pixel: device scale 1)."""
        with _driving("take a screenshot"):
            return self._page.screenshot()

    def submit(self) -> int:
        """Submit the annotation; returns the id Label Studio gave it."""
        if self._task_id is None:
            raise EditorError("submit: no task is open")
        path = f"/api/tasks/{self._task_id}/annotations"

        def is_save(response: Response) -> bool:
            return response.request.method == "POST" and path in response.url

        with _driving(f"submit task {self._task_id}"):
            with self._page.expect_response(is_save) as saved:
                self._page.click("button[aria-label='Submit current annotation']")
            response = saved.value
            if not response.ok:
                raise EditorError(f"submit: {response.status} {response.text()[:300]}")
            annotation_id: int = response.json()["id"]
        return annotation_id


@contextmanager
def _driving(action: str) -> Iterator[None]:
    """The one translation of the driver's errors (timeouts included)."""
    try:
        yield
    except _DriverError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise EditorError(f"{action}: {first_line}") from exc


@contextmanager
def launch_editor(
    base_url: str, username: str, password: str, *, executable: str | None = None
) -> Iterator[Editor]:
    """A headless chromium logged in to Label Studio; closed on exit.

    Raises:
        BrowserUnavailable: no Playwright, or no chromium (``executable`` or on the PATH).
        EditorError: the browser did not start or the login failed.
    """
    chromium = executable or find_chromium()
    problem = browser_problem(chromium)
    if problem or sync_playwright is None or chromium is None:  # the last two: for type checkers
        raise BrowserUnavailable(problem or "no browser")
    with ExitStack() as stack:
        with _driving(f"launch {chromium}"):
            driver = stack.enter_context(sync_playwright())
            browser = driver.chromium.launch(executable_path=chromium, headless=True)
            stack.callback(_close_quietly, browser)
            page = browser.new_page(
                viewport={"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT},
                device_scale_factor=1,
            )
            page.set_default_timeout(ACTION_TIMEOUT_MS)
        editor = Editor(page, base_url)
        editor.login(username, password)
        yield editor


def _close_quietly(browser: Browser) -> None:
    """Close the browser; one that crashed cannot be, and stopping the driver ends it anyway."""
    with suppress(_DriverError):
        browser.close()

"""Drive demo.py's page in headless Chromium (Playwright): draw digits and numbers with the mouse, take the screenshot.

Shared by ``demo.py --screenshot`` and tests/test_demo.py, so both draw the same strokes; apart from demo.py, whose
server needs only the standard library, because this needs Playwright and a Chromium.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from pathlib import Path

from mnistlab.errors import ProjectError
from mnistlab.files import atomic_path

# Each digit as strokes of (x, y) points in the unit square of the pad, drawn the way a hand would.
_OVAL = [(0.5 + 0.24 * math.sin(t / 12 * math.pi), 0.5 - 0.33 * math.cos(t / 12 * math.pi)) for t in range(26)]
STROKES = {
    "0": [_OVAL],
    "1": [[(0.55, 0.14), (0.51, 0.5), (0.47, 0.86)]],
    "2": [[(0.28, 0.3), (0.4, 0.17), (0.58, 0.15), (0.7, 0.27), (0.66, 0.45), (0.3, 0.84), (0.76, 0.82)]],
    "3": [
        [
            (0.3, 0.2),
            (0.5, 0.14),
            (0.68, 0.24),
            (0.62, 0.42),
            (0.45, 0.49),
            (0.66, 0.57),
            (0.7, 0.74),
            (0.52, 0.86),
            (0.3, 0.8),
        ]
    ],
    "4": [[(0.3, 0.15), (0.26, 0.55), (0.76, 0.55)], [(0.64, 0.14), (0.62, 0.88)]],
    "6": [
        [
            (0.62, 0.14),
            (0.42, 0.34),
            (0.3, 0.6),
            (0.34, 0.8),
            (0.5, 0.87),
            (0.66, 0.78),
            (0.68, 0.6),
            (0.5, 0.52),
            (0.34, 0.62),
        ]
    ],
    "7": [[(0.26, 0.18), (0.74, 0.18), (0.56, 0.5), (0.44, 0.86)]],
}
# Headless Chromium otherwise paces input to 60 frames a second: each mouse move of a stroke waited for a frame.
ARGS = ["--disable-frame-rate-limit", "--disable-gpu-vsync"]
VIEWPORT = {"width": 1000, "height": 640}


def find_chromium() -> str | None:
    """$CHROMIUM, else a system Chromium on the PATH; None: let Playwright use its own download."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def launch(playwright):
    """A headless Chromium, or a ProjectError that says how to get one."""
    from playwright.sync_api import Error

    exe = find_chromium()
    try:
        return playwright.chromium.launch(executable_path=exe, args=ARGS)
    except Error as exc:
        first = (str(exc).strip().splitlines() or ["unknown error"])[0][:160]
        raise ProjectError(
            f"cannot start Chromium {exe or '(Playwright download)'}: {first}; "
            "install it (apt-get install chromium) or set CHROMIUM=/path/to/chrome"
        ) from None


def sent_count(page) -> int:
    """How many requests the page has sent so far (its answers are awaited with wait_for_answer)."""
    return int(page.evaluate("document.body.dataset.sent"))


def wait_until(page, expression: str, timeout_ms: float = 15000):
    """Poll ``expression`` in the page from Python until it is truthy; return its value. Not page.wait_for_function:
    its in-page polling evaluates a string, which the page's CSP (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not (value := page.evaluate(expression)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not reach {expression!r} within {timeout_ms / 1000:.0f} s")
        page.wait_for_timeout(50)
    return value


def wait_for_answer(page, sent_before: int, timeout_ms: float = 15000) -> None:
    """Wait until the page has sent something after ``sent_before`` and shown the answer to its latest request."""
    data = "document.body.dataset"
    wait_until(page, f"Number({data}.sent) > {int(sent_before)} && {data}.answered === {data}.sent", timeout_ms)


def draw_digit(page, digit: str) -> None:
    """Clear the pad, draw ``digit`` stroke by stroke with the mouse, wait for the models' answer."""
    page.click("#clear")
    before = sent_count(page)
    box = page.locator("#pad").bounding_box()
    for stroke in STROKES[digit]:
        draw_stroke(page, [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke])
    wait_for_answer(page, before)


def draw_stroke(page, points: list[tuple[float, float]]) -> None:
    """One pen stroke through ``points`` (page coordinates): press, move in small steps, release."""
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point, steps=6)
    page.mouse.up()


def draw_number(page, number: str) -> None:
    """In number mode, clear the wide pad and write ``number`` digit by digit, each in its own slot (a square of
    the pad's height, 0.8 of it apart), stroke by stroke; wait for the models' answer to the last stroke."""
    if page.evaluate("document.body.dataset.mode") != "number":
        page.click("#mode-number")
    page.click("#clear")
    before = sent_count(page)
    box = page.locator("#pad").bounding_box()
    side = box["height"]
    start = box["x"] + (box["width"] - side * (0.8 * len(number) + 0.2)) / 2
    for i, digit in enumerate(number):
        left = start + 0.8 * side * i
        for stroke in STROKES[digit]:
            draw_stroke(page, [(left + x * side, box["y"] + y * side) for x, y in stroke])
    wait_for_answer(page, before)


def open_page(browser, url: str, viewport: dict = VIEWPORT):
    page = browser.new_page(viewport=viewport)
    page.goto(url)
    wait_until(page, "document.body.dataset.ready === '1'")
    return page


def screenshot(server, path: Path, digit: str = "7", number: str | None = None) -> None:
    """Serve ``server`` in a thread, draw ``digit`` (or write ``number`` in number mode) on its page and save the
    page as PNG, atomically."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ProjectError("--screenshot needs Playwright: pip install playwright") from None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            try:
                page = open_page(browser, server.url)
                draw_number(page, number) if number else draw_digit(page, digit)
                with atomic_path(path) as tmp:
                    page.screenshot(path=str(tmp), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()

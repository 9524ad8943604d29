"""The draw-a-digit page (demo.py): its routes and refusals over plain HTTP, then the page in headless Chromium.

The browser tests skip when Playwright or a Chromium is missing, except where $CI is set: there a missing
browser fails, so that CI never passes by skipping them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import io
import json
import os
import re
import socket
import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import demo
from conftest import copy_svm_paper
from mnistlab.data import load_split

SECRETS = (b"ThreadingHTTPServer", b"# Handwritten digits", b"root:")  # from demo.py, README.md, /etc/passwd


@contextlib.contextmanager
def serving(checkpoint_dir, *flags, static_dir=demo.STATIC):
    args = demo.parse_args(["--port", "0", "--device", "cpu", "--checkpoint-dir", str(checkpoint_dir), *flags])
    server = demo.make_server(args, static_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, content type, body) of one request, sent as given: http.client does not normalise the path."""
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.getheader("Content-Type"), res.read()
    finally:
        conn.close()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def stroke_png() -> bytes:
    img = np.zeros((120, 120), dtype=np.uint8)
    img[20:100, 55:65] = 255  # a white bar on black: a 1
    return png(img)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A server with no trained model and a 50 KB upload cap: routes and refusals need no model."""
    with serving(tmp_path_factory.mktemp("no-models"), "--max-upload-mb", "0.05") as server:
        yield server


# ---------------------------------------------------------------- HTTP, no browser
def test_page_files_and_models_are_served(bare):
    for path, kind, marker in [
        ("/", "text/html", b'id="pad"'),
        ("/static/app.js", "text/javascript", b"/api/predict"),
        ("/static/style.css", "text/css", b"touch-action: none"),
    ]:
        status, ctype, body = call(bare, "GET", path)
        assert status == 200 and ctype.startswith(kind) and marker in body, path
    status, ctype, body = call(bare, "GET", "/api/models")
    info = json.loads(body)
    assert status == 200 and ctype == "application/json"
    assert info["models"] == [] and info["missing"] and all(m["command"].startswith("python ") for m in info["missing"])


@pytest.mark.parametrize(
    "path",
    [
        "/static/../demo.py",
        "/static/%2e%2e/README.md",
        "/static/%2E%2E/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/../../etc/passwd",
        "/static/",
        "/static/%00",
        "/demo.py",
    ],
)
def test_nothing_outside_static_is_served(bare, path):
    status, ctype, body = call(bare, "GET", path)
    assert status == 404 and ctype == "application/json" and "error" in json.loads(body)
    assert not any(secret in body for secret in SECRETS)


def test_symlinks_out_of_static_are_refused(tmp_path):
    static, outside = tmp_path / "static", tmp_path / "secret.txt"
    static.mkdir()
    (static / "ok.css").write_text("body {}")
    outside.write_text("root: a file outside the static folder")
    (static / "link.css").symlink_to(outside)
    (static / "up").symlink_to(tmp_path, target_is_directory=True)
    with serving(tmp_path / "no-models", static_dir=static) as server:
        assert call(server, "GET", "/static/ok.css")[:2] == (200, "text/css; charset=utf-8")
        for path in ("/static/link.css", "/static/up/secret.txt"):
            status, _, body = call(server, "GET", path)
            assert status == 404 and b"root:" not in body, path


def test_bad_uploads_get_a_json_error_and_the_server_keeps_serving(bare):
    image = {"Content-Type": "image/png"}
    cases = [  # (body, extra headers, status, words of the error)
        (b"\x89PNG" + bytes(60_000), image, 413, "too large"),
        (b"this is a text file, not a picture", image, 400, "not an image"),
        (b"this is a text file, not a picture", {"Content-Type": "text/plain"}, 415, "content-type text/plain"),
        (b"", image, 400, "empty"),
        (png(np.full((50, 50), 255)), image, 400, "blank"),
        (b"--x\r\n\r\n--x--\r\n", {"Content-Type": "multipart/form-data; boundary=x"}, 415, "multipart"),
        (b"123", {"Content-Length": "abc"}, 400, "content-length"),
    ]
    for body, headers, status, words in cases:
        got, ctype, reply = call(bare, "POST", "/api/predict", body, headers)
        error = json.loads(reply)["error"]
        assert (got, ctype) == (status, "application/json") and words in error.lower(), (status, error)
        assert "\n" not in error
    # No Content-Length at all: 411, without the server waiting for a body.
    conn = http.client.HTTPConnection(*bare.server_address[:2], timeout=10)
    conn.putrequest("POST", "/api/predict")
    conn.putheader("Content-Type", "image/png")
    conn.endheaders()
    res = conn.getresponse()
    assert res.status == 411 and "content-length" in json.loads(res.read())["error"].lower()
    conn.close()
    # Still serving, and a real image still gets its 28x28 input back.
    assert call(bare, "GET", "/api/models")[0] == 200
    status, _, reply = call(bare, "POST", "/api/predict", stroke_png(), image)
    grid = np.array(json.loads(reply)["input"])
    assert status == 200 and grid.shape == (28, 28) and grid.dtype.kind == "i" and 0 <= grid.min() < grid.max() <= 255


def number_png(digits: str, data_dir, touching=(), seed: int = 0, invert: bool = True) -> bytes:
    """MNIST test digits written side by side (the numbers benchmark's renderer), dark on light paper: as PNG."""
    from benchmarks.whole_numbers import compose, crop

    x, y = load_split("test", data_dir=data_dir, size=500)
    glyphs = [crop(x[np.flatnonzero(y == int(d))[i]].astype(np.float32) / 255) for i, d in enumerate(digits)]
    canvas, _, _ = compose(glyphs, set(touching), np.random.default_rng(seed))
    return png(255 * (1 - canvas) if invert else 255 * canvas)


def test_bad_numbers_get_one_line_and_the_server_keeps_serving(bare, mnist_dir):
    image = {"Content-Type": "image/png"}
    page = Image.new("L", (900, 500), 255)
    pen, font = ImageDraw.Draw(page), ImageFont.load_default(size=20)
    for row in range(14):
        pen.text((10, 10 + 34 * row), "Lorem ipsum dolor sit amet, consectetur adipiscing elit", fill=0, font=font)
    text_page = io.BytesIO()
    page.save(text_page, format="PNG")
    cases = [  # (body, headers, status, words of the error)
        (png(np.full((50, 90), 255)), image, 400, "no ink found"),
        (png(np.full((60, 90), 30)), image, 400, "no ink found"),
        (text_page.getvalue(), image, 400, "page of text"),
        (b"a text file, not a picture", image, 400, "not an image"),
        (b"a text file, not a picture", {"Content-Type": "text/plain"}, 415, "content-type text/plain"),
        (b"\x89PNG" + bytes(60_000), image, 413, "too large"),
    ]
    for body, headers, status, words in cases:
        got, ctype, reply = call(bare, "POST", "/api/number", body, headers)
        error = json.loads(reply)["error"]
        assert (got, ctype) == (status, "application/json") and words in error.lower(), (status, error)
        assert "\n" not in error
    # Host and Origin are checked as for single digits: another site's script is refused before anything is read.
    status, _, _ = call(bare, "POST", "/api/number", png(np.zeros((9, 9))), {**image, "Origin": "http://evil.example"})
    assert status == 403
    status, _, reply = call(bare, "POST", "/api/number", number_png("2026", mnist_dir), image)
    answer = json.loads(reply)
    assert status == 200 and answer["results"] == [] and len(answer["inputs"]) == 4  # no model: the inputs alone
    assert call(bare, "GET", "/api/models")[0] == 200


def test_malformed_requests_get_json_errors(bare):
    for raw, status in [(b"GET /a b HTTP/1.1\r\n\r\n", 400), (b"PUT /api/predict HTTP/1.1\r\nHost: x\r\n\r\n", 501)]:
        with socket.create_connection(bare.server_address[:2], timeout=10) as sock:
            sock.sendall(raw)
            reply = b"".join(iter(lambda: sock.recv(65536), b""))  # noqa: B023 (consumed before the next loop)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.split()[1] == str(status).encode() and json.loads(body)["error"], reply
    assert call(bare, "GET", "/api/models")[0] == 200


def test_bad_flags_are_one_line_errors(capsys, tmp_path):
    with pytest.raises(SystemExit):
        demo.main(["--port", "70000"])
    assert "--port must be in 0..65535" in capsys.readouterr().err
    with serving(tmp_path) as server:  # the port is taken: one line, exit code 1
        assert demo.main(["--port", str(server.server_address[1]), "--checkpoint-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("demo: error: cannot listen on") and "\n" not in err


# ---------------------------------------------------------------- the page in Chromium
@pytest.fixture(scope="session")
def mnist_dir(full_mnist):
    return full_mnist[0]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist_dir, svm_paper_file):
    """A small but real CNN (fast recipe, half width, 1 epoch of 10000 images in batches of 64: about 97%) and an
    SVM at the published settings fitted on 3000 images: one model of each family, as the page shows them.

    One thread: on shared cores, two threads that wait for each other were measured 7x slower.
    """
    import dl_main

    root, out = tmp_path_factory.mktemp("demo-checkpoints"), tmp_path_factory.mktemp("demo-run")
    flags = ["--recipe", "fast", "--epochs", "1", "--train-size", "10000", "--batch-size", "64", "--width", "16"]
    flags += ["--threads", "1"]
    flags += ["--test-size", "1000", "--device", "cpu"]
    paths = ["--data-dir", str(mnist_dir), "--checkpoint-dir", str(root), "--results-dir", str(out)]
    assert dl_main.main(["--model", "cnn", *flags, *paths, "--plots-dir", str(out)]) == 0
    (cnn,) = (root / "mnist").glob("cnn-fast-*.pt")  # named by its explicit settings; the page loads <model>-<recipe>
    cnn.rename(root / "mnist" / "cnn-fast.pt")
    copy_svm_paper(svm_paper_file, root)
    return root


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")  # session, like the model: fixtures of one scope start in argument order,
def browser():  # so a missing browser skips before ten seconds of training
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright)")
    from mnistlab.browser import launch
    from mnistlab.errors import ProjectError

    pw = sync_playwright().start()
    try:
        chromium = launch(pw)
    except ProjectError as exc:
        pw.stop()
        unavailable(str(exc))
    yield chromium
    chromium.close()
    pw.stop()


@pytest.fixture(scope="module")
def served(trained):
    """One server of the trained models for the page's tests (each opens a page of its own)."""
    with serving(trained) as server:
        yield server


def check_answers(page, networks: list[str], digit: str) -> None:
    assert page.locator("#error").is_hidden()
    for name in networks:
        card = page.locator(f'.result[data-model="{name}"]')
        assert card.locator(".label").text_content() == digit, (name, card.inner_text())
        assert card.locator(".top li").count() == 3
        assert card.locator(".kind").text_content() == "probability"
        assert re.fullmatch(r"\d+\.\d ms", card.locator(".ms").text_content())
    seen = "document.querySelector('#seen').getContext('2d')"
    pixels = page.evaluate(f"Array.from({seen}.getImageData(0, 0, 28, 28).data)")
    assert max(pixels[0::4]) > 128, "the 28x28 input is not shown"


@pytest.mark.browser
def test_drawn_and_uploaded_digits_are_recognised(browser, served, mnist_dir):
    from mnistlab.browser import STROKES, draw_digit, open_page, sent_count, wait_for_answer

    server = served
    info = json.loads(call(server, "GET", "/api/models")[2])
    networks = [m["name"] for m in info["models"] if m["family"] == "network"]
    assert networks == ["cnn-fast"] and [m["name"] for m in info["models"]] == ["cnn-fast", "svm-paper"], info
    page = open_page(browser, server.url)
    for m in info["missing"]:
        assert page.locator(f'#missing li[data-model="{m["name"]}"] code').text_content() == m["command"]
    for digit in STROKES:  # 0, 1, 2, 3, 4, 7
        draw_digit(page, digit)
        check_answers(page, networks, digit)
    svm = page.locator('.result[data-model="svm-paper"]')  # no probabilities: scores, labelled as such
    assert svm.locator(".kind").text_content() == "decision score" and svm.locator(".top li").count() == 3
    assert re.fullmatch(r"\d", svm.locator(".label").text_content())

    # A photo of a real test digit, dark ink on white paper, uploaded: the same answer as drawn ones.
    x, y = load_split("test", data_dir=mnist_dir, size=1)
    photo = png(255 - np.kron(x[0], np.ones((6, 6), dtype=np.uint8)))
    before = sent_count(page)
    page.set_input_files("#upload", files=[{"name": "digit.png", "mimeType": "image/png", "buffer": photo}])
    wait_for_answer(page, before)
    check_answers(page, networks, str(y[0]))

    before = sent_count(page)
    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    wait_for_answer(page, before)
    error = page.locator("#error")
    assert error.is_visible() and "image" in error.text_content().lower()

    assert call(server, "GET", "/api/models")[0] == 200  # the server outlived the bad upload
    page.set_viewport_size({"width": 360, "height": 740})  # a phone: the pad fits, nothing scrolls sideways
    assert page.locator("#pad").bounding_box()["width"] <= 336
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    draw_digit(page, "7")
    check_answers(page, networks, "7")


@pytest.mark.browser
def test_a_written_number_is_read_by_every_model(browser, served, mnist_dir):
    from mnistlab.browser import draw_number, open_page, sent_count, wait_for_answer

    server = served
    page = open_page(browser, server.url)
    draw_number(page, "2026")
    assert page.evaluate("document.body.dataset.mode") == "number" and page.locator("#error").is_hidden()
    cnn = page.locator('.result[data-model="cnn-fast"]')
    assert cnn.locator(".label").text_content() == "2026", cnn.inner_text()
    assert cnn.locator(".digits li").count() == 4 and re.fullmatch(r"\d+\.\d ms", cnn.locator(".ms").text_content())
    svm = page.locator('.result[data-model="svm-paper"]')
    assert re.fullmatch(r"\d+", svm.locator(".label").text_content()) and svm.locator(".kind").text_content()
    assert page.evaluate("document.body.dataset.boxes") == "4"  # the boxes where the digits were found
    boxes = "document.querySelector('#boxes').getContext('2d')"
    alpha = page.evaluate(f"Array.from({boxes}.getImageData(0, 0, 840, 280).data).filter((v, i) => i % 4 == 3)")
    assert sum(a > 0 for a in alpha) > 500
    assert page.locator("#strip canvas").count() == 4

    # A photo of a number, dark on light paper, uploaded: drawn on the pad and read by every model.
    before = sent_count(page)
    photo = number_png("3817", mnist_dir, seed=4)
    page.set_input_files("#upload", files=[{"name": "number.png", "mimeType": "image/png", "buffer": photo}])
    wait_for_answer(page, before)
    assert cnn.locator(".label").text_content() == "3817", cnn.inner_text()
    assert page.evaluate("document.body.dataset.boxes") == "4"


@pytest.mark.browser
def test_one_digit_mode_says_when_it_sees_several_or_none(browser, served):
    from mnistlab.browser import STROKES, draw_stroke, open_page, sent_count, wait_for_answer

    server = served
    page = open_page(browser, server.url)
    box = page.locator("#pad").bounding_box()
    before = sent_count(page)
    for digit, left in (("7", 0.02), ("4", 0.5)):  # two digits side by side on the square pad
        for stroke in STROKES[digit]:
            draw_stroke(
                page, [(box["x"] + (left + 0.48 * x) * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
            )
    wait_for_answer(page, before)
    doubt = page.locator("#doubt")
    assert doubt.is_visible() and "looks like 2 digits" in doubt.text_content(), doubt.text_content()
    assert page.locator(".result.doubtful").count() == 2

    page.click("#clear")
    before = sent_count(page)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a tap: a dot
    wait_for_answer(page, before)
    assert "does not look like one digit" in doubt.text_content(), page.locator("#error").text_content()


@pytest.mark.browser
def test_screenshot_command(browser, trained, tmp_path):
    path = tmp_path / "shot" / "demo.png"
    argv = ["--port", "0", "--device", "cpu", "--checkpoint-dir", str(trained), "--screenshot", str(path)]
    # In a thread of its own: Playwright's sync API cannot start inside the browser fixture's running one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(demo.main, argv).result(timeout=60) == 0
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width == 1000
    assert [p.name for p in path.parent.iterdir()] == ["demo.png"]  # no temporary file left behind


@pytest.mark.browser
def test_number_screenshot_command(browser, trained, tmp_path):
    path = tmp_path / "demo_number.png"
    argv = ["--port", "0", "--device", "cpu", "--checkpoint-dir", str(trained), "--screenshot", str(path), "--number"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(demo.main, argv).result(timeout=60) == 0
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width == 1000

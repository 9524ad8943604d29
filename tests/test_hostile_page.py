"""demo.py facing the world: other sites' requests, form content types, huge images, HEAD, the Server header,
bad flags, and a classroom's worth of requests at once. Loopback only: every server here is started by its test
on a free port of 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest
from test_demo import call, serving, stroke_png

import demo
from mnistlab.images import read_digit
from model_files import png_header

IMAGE = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A server with no trained model (the 28x28 input is answered anyway) and a 50 KB upload cap."""
    with serving(tmp_path_factory.mktemp("no-models"), "--max-upload-mb", "0.05") as server:
        yield server


def error_of(reply: bytes) -> str:
    error = json.loads(reply)["error"]
    assert error and "\n" not in error and len(error) < 300
    return error


def expected_input(image: bytes) -> list:
    return np.rint(read_digit(image) * 255).astype(int).tolist()


def raw(server, request: bytes) -> tuple[bytes, bytes]:
    """(head, body) of one request sent as bytes, read until the server closes the connection."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(request)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


def test_other_hosts_and_origins_are_refused(page):
    port = page.server_address[1]
    own = f"http://127.0.0.1:{port}"
    for headers in [
        {"Host": "attacker.example"},  # DNS rebinding: a name that now resolves to 127.0.0.1
        {"Host": f"attacker.example:{port}"},
        {"Host": f"127.0.0.1:{port + 1 if port < 65535 else port - 1}"},
        {"Origin": "https://attacker.example"},  # another site's script
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Origin": f"https://127.0.0.1:{port}"},
    ]:
        for method, path, body in [("GET", "/api/models", None), ("POST", "/api/predict", stroke_png())]:
            status, ctype, reply = call(page, method, path, body, {**IMAGE, **headers})
            assert (status, ctype) == (403, "application/json"), (method, headers, reply)
            assert "forbidden" in error_of(reply) and b"models" not in reply
    for name in ("127.0.0.1", "localhost", "LOCALHOST"):  # the server's own names are served
        assert call(page, "GET", "/api/models", headers={"Host": f"{name}:{port}"})[0] == 200
    status, _, reply = call(page, "POST", "/api/predict", stroke_png(), {**IMAGE, "Origin": own})  # as fetch() sends
    assert status == 200 and json.loads(reply)["input"] == expected_input(stroke_png())
    head, body = raw(page, b"GET /api/models HTTP/1.0\r\n\r\n")  # no Host at all
    assert head.split()[1] == b"403" and "Host" in error_of(body)


def test_allowed_hosts_are_the_served_address_and_port():
    assert demo.allowed_hosts("127.0.0.1", 8000) == {"127.0.0.1:8000", "localhost:8000"}
    assert demo.allowed_hosts("::1", 8000) == {"[::1]:8000", "localhost:8000"}
    assert demo.allowed_hosts("127.0.0.1", 80) == {"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}
    assert demo.allowed_hosts("192.0.2.7", 8000) == {"192.0.2.7:8000"}  # another address: not localhost
    assert {"127.0.0.1:8000", "[::1]:8000", "localhost:8000"} <= demo.allowed_hosts("0.0.0.0", 8000)


@pytest.mark.parametrize(
    "kind",
    [
        "text/plain",  # the three a cross-site HTML form (or a simple fetch) can send
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain; charset=utf-8",
        None,
    ],
)
def test_only_image_types_reach_the_models(page, kind):
    headers = {"Content-Type": kind} if kind else {}
    status, ctype, reply = call(page, "POST", "/api/predict", stroke_png(), headers)
    assert (status, ctype) == (415, "application/json") and "image/png" in error_of(reply)
    for accepted in ("image/png", "image/jpeg", "application/octet-stream"):  # Pillow judges the bytes
        assert call(page, "POST", "/api/predict", stroke_png(), {"Content-Type": accepted})[0] == 200


def test_huge_image_is_refused_from_its_header(page):
    """A 110-byte PNG that declares 9400x9400 pixels (88 million, under Pillow's own warning at 89 million)."""
    status, _, reply = call(page, "POST", "/api/predict", png_header(9400, 9400), IMAGE)
    assert status == 400 and error_of(reply) == (
        "image: image is 9400x9400 pixels (88 million), over the 40 million-pixel limit; scale it down"
    )
    assert call(page, "GET", "/api/models")[0] == 200


def test_decoding_takes_turns(page, monkeypatch):
    """Decoding and preprocessing run inside the same lock as the prediction: never two at once."""
    active, most, guard = [0], [0], threading.Lock()

    def slow_read_digit(body, name):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.15)
        with guard:
            active[0] -= 1
        return read_digit(body, name)

    monkeypatch.setattr(demo, "read_digit", slow_read_digit)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: call(page, "POST", "/api/predict", stroke_png(), IMAGE), range(3)))
    assert [a[0] for a in answers] == [200] * 3 and most[0] == 1


def test_uploads_wait_for_a_slot_then_get_503(page, monkeypatch):
    monkeypatch.setattr(demo, "ADMISSION_SECONDS", 0.1)
    taken = [page.app.slots.acquire(timeout=5) for _ in range(demo.UPLOAD_SLOTS)]
    try:
        assert all(taken)
        conn = http.client.HTTPConnection(*page.server_address[:2], timeout=10)
        conn.request("POST", "/api/predict", body=stroke_png(), headers=IMAGE)
        res = conn.getresponse()
        assert res.status == 503 and res.getheader("Retry-After") == "1" and "busy" in error_of(res.read())
        conn.close()
    finally:
        for _ in taken:
            page.app.slots.release()
    assert call(page, "POST", "/api/predict", stroke_png(), IMAGE)[0] == 200


def test_head_is_get_without_a_body(page):
    host = f"Host: 127.0.0.1:{page.server_address[1]}\r\n".encode()
    for path in (b"/", b"/static/app.js", b"/api/models", b"/nowhere"):
        get_head, get_body = raw(page, b"GET " + path + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        head, body = raw(page, b"HEAD " + path + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        assert head.split()[1] == get_head.split()[1] and body == b"", (path, head)
        length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        assert length == [f"Content-Length: {len(get_body)}".encode()], path


def test_server_header_names_no_version(page):
    conn = http.client.HTTPConnection(*page.server_address[:2], timeout=10)
    conn.request("GET", "/")
    res = conn.getresponse()
    res.read()
    conn.close()
    assert res.getheader("Server") == "digits-demo"
    head, _ = raw(page, b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n")  # http.server's own refusal: 501
    assert head.split()[1] == b"501" and b"Server: digits-demo\r\n" in head + b"\r\n" and b"Python" not in head


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "0.001", "101", "1e400", "abc"])
def test_max_upload_mb_is_a_bounded_number(capsys, value):
    with pytest.raises(SystemExit) as info:
        demo.parse_args([f"--max-upload-mb={value}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert info.value.code == 2 and len(errors) == 1 and "--max-upload-mb" in errors[0], errors


def test_a_classroom_at_once(page):
    """150 GETs and 50 POSTs, all started together: every one answered, correctly, in a few seconds."""
    assert demo.Server.request_queue_size >= 128  # the listen queue: connections not yet accepted wait, not reset
    image, expected = stroke_png(), expected_input(stroke_png())
    models = call(page, "GET", "/api/models")[2]
    index = call(page, "GET", "/")[2]
    jobs = [("GET", "/api/models", None, models) if i % 2 else ("GET", "/", None, index) for i in range(150)]
    jobs += [("POST", "/api/predict", image, expected)] * 50
    start = threading.Barrier(len(jobs), timeout=30)

    def one(job):
        method, path, body, want = job
        start.wait()
        status, _, reply = call(page, method, path, body, IMAGE if body else None)
        got = json.loads(reply)["input"] if method == "POST" and status == 200 else reply
        return status == 200 and got == want

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = [future.result(timeout=60) for future in [pool.submit(one, job) for job in jobs]]
    assert all(answers), f"{answers.count(False)} of {len(jobs)} requests failed"
    assert time.monotonic() - began < 30


# ---------------------------------------------------------------- slow and lying clients
def open_upload(server, sent: bytes, length: int) -> socket.socket:
    """A POST that declares ``length`` bytes and sends only ``sent`` of them, left open."""
    sock = socket.create_connection(server.server_address[:2], timeout=10)
    host = f"127.0.0.1:{server.server_address[1]}"
    head = f"POST /api/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\nContent-Length: {length}\r\n\r\n"
    sock.sendall(head.encode() + sent)
    return sock


def reply_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a socket.timeout fails the test: the server held on)."""
    return b"".join(iter(lambda: sock.recv(65536), b""))


def test_slow_uploads_hold_no_slot(page, monkeypatch):
    """More slow uploads than slots: the others' uploads are answered at once (the slot is taken once the body
    is in, not before it is read)."""
    monkeypatch.setattr(demo, "ADMISSION_SECONDS", 1.0)  # before: every slot held, a 503 after it
    slow = [open_upload(page, b"\x89PNG", 40_000) for _ in range(demo.UPLOAD_SLOTS + 2)]
    try:
        time.sleep(0.2)  # their headers are read and they wait for their bodies
        began = time.monotonic()
        assert call(page, "POST", "/api/predict", stroke_png(), IMAGE)[0] == 200
        assert call(page, "GET", "/api/models")[0] == 200 and time.monotonic() - began < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_a_stalled_body_gets_408(page, monkeypatch):
    monkeypatch.setattr(demo, "BODY_SECONDS", 0.5)
    began = time.monotonic()
    with open_upload(page, b"\x89PNG", 1000) as sock:  # 4 of 1000 bytes, then nothing
        assert call(page, "GET", "/api/models")[0] == 200  # others are served meanwhile
        head, _, body = reply_of(sock).partition(b"\r\n\r\n")
    assert head.split()[1] == b"408" and "4 of its 1000 bytes" in error_of(body)  # before: dropped, no answer
    assert time.monotonic() - began < 3


def test_headers_sent_a_byte_at_a_time_get_408(page, monkeypatch):
    """A client that trickles its headers (each read within the socket timeout) is cut off at HEAD_SECONDS."""
    monkeypatch.setattr(demo, "HEAD_SECONDS", 0.5, raising=False)  # before: none
    began = time.monotonic()
    with socket.create_connection(page.server_address[:2], timeout=3) as sock:
        sock.sendall(f"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1:{page.server_address[1]}\r\n".encode())
        try:
            for _ in range(30):  # before: held for as long as the client kept trickling
                sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(0.1)
        except OSError:
            pass  # the server closed it: what is wanted
        assert call(page, "GET", "/api/models")[0] == 200
        head = reply_of(sock).partition(b"\r\n\r\n")[0]
    assert head.split()[1] == b"408" and time.monotonic() - began < 3.5


def test_an_idle_connection_is_closed(page, monkeypatch):
    monkeypatch.setattr(demo, "HEAD_SECONDS", 0.5, raising=False)  # before: none
    with socket.create_connection(page.server_address[:2], timeout=3) as sock:
        assert reply_of(sock) == b""  # closed without an answer: it had asked nothing


@pytest.mark.parametrize(
    "lengths",
    [["+{n}"], ["{n}_0"], ["-{n}"], ["0x{n}"], ["{n}.0"], ["{n}, {n}"], ["{n}", "{n}"], ["{n}", "7"], [""], ["1e3"]],
)
def test_a_content_length_must_be_one_plain_number(page, lengths):
    """Python's int() takes "+5", "5_0" and " 5 "; a second Content-Length could mean another body to a proxy."""
    image = stroke_png()
    head = f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{page.server_address[1]}\r\nContent-Type: image/png\r\n"
    head += "".join(f"Content-Length: {value.format(n=len(image))}\r\n" for value in lengths)
    reply_head, body = raw(page, head.encode() + b"Connection: close\r\n\r\n" + image)
    assert reply_head.split()[1] == b"400" and "content-length" in error_of(body).lower(), (lengths, body)
    assert call(page, "POST", "/api/predict", image, IMAGE)[0] == 200


def test_a_client_that_resets_mid_request_leaves_no_traceback(page, capsys):
    """socketserver printed a traceback for a connection reset while the headers (or a body) were being read."""
    host = f"Host: 127.0.0.1:{page.server_address[1]}\r\n".encode()
    for request in (b"GET / HTTP/1.1\r\n" + host, b"POST /api/predict HTTP/1.1\r\n" + host + b"Content-Length: 99\r\n"):
        sock = socket.create_connection(page.server_address[:2], timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends a reset
        sock.sendall(request)
        time.sleep(0.1)
        sock.close()
    time.sleep(0.2)
    assert call(page, "GET", "/api/models")[0] == 200 and "Traceback" not in capsys.readouterr().err


def test_a_refused_http_version_still_gets_a_status_line(page):
    head, body = raw(page, b"GET / HTTP/2.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % page.server_address[1])
    assert head.startswith(b"HTTP/1.") and head.split()[1] == b"505" and "HTTP version" in error_of(body)

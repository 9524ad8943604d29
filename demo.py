"""A page to draw a digit on (or upload a photo of one) and see every trained model's answer side by side.

    python demo.py                              # then open http://127.0.0.1:8000/
    python demo.py --port 0                     # any free port; the URL actually bound is printed
    python demo.py --screenshot plots/demo.png  # draw a 7 in headless Chromium and save the page
    python demo.py --screenshot plots/demo_number.png --number   # write 2026 in number mode and save the page

The page (static/, nothing fetched from elsewhere) sends the canvas as PNG after every stroke to POST /api/predict:
the answer is the 28x28 input read_digit made, every model's top classes, and a ``doubt`` when the drawing holds
several digits or none. Number mode sends it to POST /api/number: every model's number as predict.py --number
reads it, each digit's score and box, and the default network's 28x28 inputs.

It binds 127.0.0.1 unless --host says otherwise, refuses other sites' requests (403) and anything but an image
upload of bounded size and time, each with a JSON error: docs/design.md ("The page") says how and why.
"""

from __future__ import annotations

import mnistlab.errors  # noqa: F401 (first: its hook makes a Ctrl-C during the slow imports below one line)

# isort: split
import argparse
import contextlib
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from mnistlab.errors import ProjectError, one_line, run_cli
from mnistlab.files import jsonable
from mnistlab.flags import add_models_location, in_range, path_type
from mnistlab.images import MAX_FILE_MB, read_digit, read_grey, source_name
from mnistlab.numbers import Layout, find_layout, read_layout, read_number
from mnistlab.paths import REPO
from mnistlab.saved_models import classify_all, find_models

STATIC = REPO / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# Everything comes from this server: the page works offline and an injected script could not load anything.
CSP = "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
DRAIN_LIMIT, DRAIN_SECONDS = 64 << 20, 5.0  # how much of a refused upload is read and dropped (see _refuse)
UPLOAD_SLOTS = 4  # uploads decoded and predicted at once at most (the decoding itself one at a time)
ADMISSION_SECONDS = 20.0  # how long an upload, once read, waits for a slot before a 503
HEAD_SECONDS = 10.0  # the longest a request line and its headers may take to arrive (or a kept-alive one to start)
BODY_SECONDS = 30.0  # the longest an upload's body may take to arrive
IDLE_SECONDS = 30.0  # the longest a connection may send nothing, within those
READ_BUDGET = 256 << 20  # bytes of upload bodies in memory at once, over all connections (at least one 100 MB one)
# What a cross-site HTML form can send (text/plain, multipart/form-data, application/x-www-form-urlencoded) is
# never accepted: an image is sent as itself, with its own type, as fetch() does.
IMAGE_TYPES = ("image/", "application/octet-stream")
LOOPBACK = ("127.0.0.1", "::1")  # also reached as localhost


class Demo:
    """What the request handlers share: the loaded models and the server's settings."""

    def __init__(self, predictors, missing, args, static_dir: Path):
        self.predictors, self.missing = predictors, missing
        self.dataset, self.device = args.dataset, args.device  # as asked for; the networks resolved "auto"
        self.max_bytes = int(args.max_upload_mb * (1 << 20))
        self.static_dir = Path(static_dir).resolve()
        self.slots = threading.BoundedSemaphore(UPLOAD_SLOTS)  # uploads processed at once (Handler._post)
        self.budget = Budget(READ_BUDGET)  # bodies held in memory, from their first byte to their answer
        self.lock = threading.Lock()  # decoding, preprocessing and prediction, one upload at a time

    def models(self) -> dict:
        return {
            "dataset": self.dataset,
            "device": self.device,
            "max_upload_bytes": self.max_bytes,
            "models": [
                {"name": p.name, "family": p.family, "classes": list(p.classes), "score_kind": p.score_kind}
                for p in self.predictors
            ],
            "missing": [{"name": name, "command": command} for name, command in self.missing],
        }

    def predict(self, body: bytes, name: str) -> dict:
        """One digit: every model's top classes for read_digit's 28x28 input, and a doubt (see doubt)."""
        with self.lock:  # the decoding too: it is what a huge image costs (memory by the pixel)
            x = read_digit(body, name=name)  # the one way a single digit is read, as the command line does
            results = classify_all(self.predictors, x)
            doubt = self.doubt(read_grey(body, name))  # decoded again (bounded): the digits are found on its grey
        return {"input": as_pixels(x), "results": results, "doubt": doubt}

    def doubt(self, grey: np.ndarray) -> str | None:
        """Why one digit's answer is a guess (several digits, as the default network cuts them, or none), or None."""
        try:
            layout = find_layout(grey)
        except ProjectError as exc:
            return f"This does not look like one digit ({exc}): the answers below are guesses."
        reading = read_layout(layout, self.predictors[0] if self.predictors else None)
        if len(reading.digits) > 1:
            return (
                f"This looks like {len(reading.digits)} digits, not one: the answers below are guesses. "
                "Switch to Number mode to read them all."
            )
        return None

    def number(self, body: bytes, name: str) -> dict:
        """A whole number: every model's reading, as number_reply answers it."""
        with self.lock:
            grey = read_grey(body, name)
            try:
                layout = find_layout(grey)
            except ProjectError as exc:
                raise ProjectError(f"{source_name(body, name)}: {exc}") from None
            readings = read_number(layout, self.predictors)
            first = readings[0] if readings else read_layout(layout)  # no model yet: the inputs are shown anyway
        return number_reply(layout, readings, first)


class Budget:
    """Bytes that upload bodies may hold in memory at once: taken before a body is read (a 503 when not free), given
    back after its answer, so slow uploads stay bounded without holding a slot."""

    def __init__(self, total: int):
        self.free, self.lock = total, threading.Lock()

    def take(self, n: int) -> bool:
        with self.lock:
            if n > self.free:
                return False
            self.free -= n
            return True

    def give(self, n: int) -> None:
        with self.lock:
            self.free += n


class Deadline(io.RawIOBase):
    """A connection's reading end where each read waits at most until ``start``'s deadline (and ``idle``), so a
    client that trickles its headers or body cannot hold a thread for ever."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.start(HEAD_SECONDS)

    def start(self, seconds: float, idle: float | None = None) -> None:
        self.deadline, self.received, self.expired = time.monotonic() + seconds, 0, False
        self.idle = IDLE_SECONDS if idle is None else idle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = min(self.deadline - time.monotonic(), self.idle)
        if left <= 0:
            self.expired = True
            raise TimeoutError("the deadline of this request has passed")
        timeout = self.sock.gettimeout()
        self.sock.settimeout(left)
        try:
            n = self.sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
        finally:
            self.sock.settimeout(timeout)  # writes keep the handler's own timeout
        self.received += n
        return n


def as_pixels(x: np.ndarray) -> list:
    """A 28x28 input in [0, 1] as rows of whole grey levels 0..255, for the page to draw."""
    return np.rint(np.asarray(x, dtype=np.float64) * 255).astype(int).tolist()


def number_reply(layout: Layout, readings: list, first) -> dict:
    """The /api/number answer: per model its number, and per digit its label, score and box (x, y, width,
    height in the image's pixels); the 28x28 inputs of the first reading; the image's size and the layout's time."""
    results = []
    for r in readings:
        digits = [{"label": d.label, "score": d.score, "box": box_xywh(d.box)} for d in r.digits]
        row = {"name": r.name, "family": r.family, "score_kind": r.score_kind, "number": r.number, "digits": digits}
        results.append({**row, "ms": r.ms})
    height, width = layout.shape
    inputs = [as_pixels(d.x28) for d in first.digits]
    return {"width": width, "height": height, "layout_ms": layout.ms, "inputs": inputs, "results": results}


def box_xywh(box) -> list[int]:
    top, left, bottom, right = box
    return [left, top, right - left, bottom - top]


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values of this server, as a browser sends them: name:port (and the bare name on port 80).

    On loopback: that address and localhost; on a name or another address: it and what it resolves to; on every
    address (0.0.0.0, ::): the loopback and this machine's names (and any IP address, see Server.host_allowed).
    """
    try:
        resolved = [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    except OSError:
        resolved = []
    names = {host.lower(), *resolved}
    if host in ("0.0.0.0", "::", ""):
        names = {*LOOPBACK, socket.gethostname().lower(), socket.getfqdn().lower()}
    names |= {"localhost"} if names & set(LOOPBACK) else set()
    names = {f"[{name}]" if ":" in name else name for name in names if name}
    return frozenset({f"{name}:{port}" for name in names} | (names if port == 80 else set()))


class Handler(BaseHTTPRequestHandler):
    server_version = "digits-demo"  # and no Python version after it: see version_string
    timeout = 30  # seconds: a write to a client that stops reading fails (reads: see Deadline)

    @property
    def app(self) -> Demo:
        return self.server.app

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # http.server's own reader, replaced by one with a deadline
        self.rfile = io.BufferedReader(Deadline(self.connection))

    def handle_one_request(self) -> None:
        """One request whose line and headers must arrive within HEAD_SECONDS: a 408 when they began but did not
        end in time (http.server drops the connection on a timeout without an answer)."""
        self.head_read = False
        self.rfile.raw.start(HEAD_SECONDS)
        super().handle_one_request()
        raw = self.rfile.raw
        if not self.head_read and raw.expired and raw.received:
            self.command, self.request_version, self.close_connection = "", "HTTP/1.1", True
            with contextlib.suppress(OSError):
                self._json(408, {"error": f"the request's headers took over {HEAD_SECONDS:g} s to arrive"})

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.head_read = True  # the headers are in (refused or not, http.server has answered a bad one)
        return ok

    def do_GET(self):  # noqa: N802 (the name http.server dispatches to)
        self._guard(self._get)

    do_HEAD = do_GET  # noqa: N815 (like GET, without the body: see _json and _static)

    def do_POST(self):  # noqa: N802
        self._guard(self._post)

    def version_string(self) -> str:
        return self.server_version  # not http.server's "Python/3.x.y" after it

    def _guard(self, route) -> None:
        """Run a route; whatever goes wrong, the client gets a JSON error and the server keeps serving."""
        try:
            if (refusal := self._foreign()) is not None:
                return self._refuse(403, refusal, self._declared() if self.command == "POST" else 0)
            route(urlsplit(self.path).path)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away: nobody to answer
        except Exception as exc:  # one bad request must never stop the server
            first = (str(exc).splitlines() or [""])[0][:200]
            self.log_message("internal error: %s: %s", type(exc).__name__, first)
            self._json(500, {"error": f"internal error ({type(exc).__name__}); see the server's log"})

    def _foreign(self) -> str | None:
        """Why a request comes from elsewhere, or None: another Host is DNS rebinding, another Origin another site's
        script or form (a same-origin fetch() sends this server's own)."""
        host, origin, url = self.headers.get("Host"), self.headers.get("Origin"), self.server.url
        if host is None:
            return f"a Host header is required; open {url}"
        if not self.server.host_allowed(host):
            return f"forbidden: Host {host[:100]!r} is not this server; open {url}"
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme != "http" or parts.path or parts.query or not self.server.host_allowed(parts.netloc):
                return f"forbidden: requests from {origin[:100]!r} are not accepted; open {url}"
        return None

    def _get(self, path: str) -> None:
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/"):
            self._static(path[len("/static/") :])
        elif path == "/api/models":
            self._json(200, self.app.models())
        else:
            self._json(404, {"error": f"not found: {path[:200]}"})

    def _static(self, rel: str) -> None:
        """A file inside the static folder; anything resolving outside it (.., %2e%2e, /abs, symlinks) is a 404."""
        root, rel = self.app.static_dir, unquote(rel)
        try:
            target = (root / rel).resolve() if "\x00" not in rel else root
            data = target.read_bytes() if target.is_relative_to(root) and target.is_file() else None
        except (OSError, RuntimeError):  # a name too long, a symlink loop: nothing to serve either
            data = None
        if data is None:
            return self._json(404, {"error": "not found"})
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(target.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _post(self, path: str) -> None:
        routes = {"/api/predict": self.app.predict, "/api/number": self.app.number}
        if path not in routes:
            return self._refuse(
                404, f"not found: POST {path[:200]}; images go to POST /api/predict or /api/number", self._declared()
            )
        n = self._admissible()
        if n is None:
            return
        if not self.app.budget.take(n):
            return self._refuse(503, "busy: too many uploads arriving at once; try again in a moment", n, retry=True)
        try:  # the body first, bounded in size and time; then a slot: a slow upload holds no slot while it arrives
            body = self._read_body(n)
            if body is None:
                return
            if not self.app.slots.acquire(timeout=ADMISSION_SECONDS):
                return self._refuse(503, "busy: too many uploads at once; try again in a moment", retry=True)
            try:
                self._answer(routes[path], body)
            finally:
                self.app.slots.release()
        finally:
            self.app.budget.give(n)

    def _answer(self, route, body: bytes) -> None:
        name = unquote(self.headers.get("X-Filename", ""))
        name = "".join(c for c in name if c.isprintable())[:100] or "image"  # it is echoed in error messages
        try:
            reply = route(body, name)
        except ProjectError as exc:
            return self._json(400, {"error": str(exc)})
        self._json(200, reply)

    def _admissible(self) -> int | None:
        """The length of an upload that may be read, or None once a 4xx answer has been sent for it."""
        lengths, n, cap = self.headers.get_all("Content-Length") or [], self._declared(), self.app.max_bytes
        kind = self.headers.get_content_type() if self.headers.get("Content-Type") else "none"
        if self.headers.get("Transfer-Encoding"):
            return self._refuse(411, "chunked uploads are not supported: send a Content-Length")
        if not lengths:
            return self._refuse(411, "Content-Length required: send the image as the request body")
        if len(lengths) > 1:  # which one a proxy in front believed is unknown: the body's end would be a guess
            return self._refuse(400, f"bad Content-Length: {len(lengths)} Content-Length headers; send one")
        if n < 0:
            return self._refuse(400, f"bad Content-Length: {lengths[0][:40]!r} is not a number of bytes")
        if n > cap:
            return self._refuse(413, f"upload too large: {n} bytes, the limit is {cap} (--max-upload-mb)", n)
        if not kind.startswith(IMAGE_TYPES):
            form = " (a form: send the image itself as the request body)" if kind.startswith("multipart/") else ""
            return self._refuse(
                415, f"Content-Type {kind[:60]}{form} not accepted: send an image as image/png, image/jpeg...", n
            )
        if n == 0:
            return self._refuse(400, "empty request: send an image (PNG, JPEG...) as the body")
        return n

    def _read_body(self, n: int) -> bytes | None:
        """The request body of ``n`` bytes, or None once a 4xx answer has been sent for it: a 408 when it does not
        arrive within BODY_SECONDS, or stalls for IDLE_SECONDS (see Deadline)."""
        chunks, got = [], 0
        self.rfile.raw.start(BODY_SECONDS)
        while got < n:
            try:
                chunk = self.rfile.read1(min(n - got, 1 << 16))
            except TimeoutError:
                return self._refuse(408, f"the body did not arrive in time ({got} of its {n} bytes came)")
            if not chunk:
                return self._refuse(400, f"the body ended after {got} of its {n} bytes")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _declared(self) -> int:
        """The Content-Length as a number; -1 when absent, repeated or not plain digits (no sign, no "1_000",
        no other script's digits, which Python's int() would all take)."""
        lengths = self.headers.get_all("Content-Length") or []
        text = lengths[0].strip(" \t") if len(lengths) == 1 else ""
        return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else -1

    def _refuse(self, status: int, message: str, unread: int = 0, retry: bool = False) -> None:
        """Answer a request whose body was not read, then drop up to DRAIN_LIMIT of it before closing: closing with
        unread data sends a reset, which a client may report instead of the answer."""
        self.close_connection = True
        self._json(status, {"error": message}, retry=retry)
        self.wfile.flush()
        self.rfile.raw.start(DRAIN_SECONDS, idle=1.0)  # a client that claims more than it sends: dropped in a second
        unread = min(unread, DRAIN_LIMIT)
        with contextlib.suppress(OSError):
            while unread > 0 and (chunk := self.rfile.read1(min(unread, 1 << 16))):
                unread -= len(chunk)

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (bad request line, oversized headers, unknown method) in JSON too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # a version it refused (HTTP/2.0): still a status line, not a bare body
            self.request_version = "HTTP/1.1"
        self._json(code, {"error": message or HTTPStatus(code).phrase})

    def _json(self, status: int, obj, retry: bool = False) -> None:
        data = json.dumps(obj, allow_nan=False, default=jsonable).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if retry:
            self.send_header("Retry-After", "1")
        self._common_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _common_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)

    def log_message(self, fmt, *args):
        sys.stderr.write(f"demo.py: {self.address_string()} {fmt % args}\n")


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # connections waiting to be accepted: a classroom opening the page at once

    def __init__(self, address, family, app: Demo):
        self.address_family, self.app = family, app  # set before the base class creates the socket
        super().__init__(address, Handler)
        self.hosts = allowed_hosts(address[0], self.server_address[1])
        self.any_address = address[0] in ("0.0.0.0", "::", "")

    def handle_error(self, request, client_address) -> None:
        """A connection that failed outside any route (a client reset mid-headers): one log line, not socketserver's
        traceback; a client that went away is not an error of this server at all."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError | TimeoutError):
            sys.stderr.write(
                f"demo.py: {client_address[0]} connection failed: {type(exc).__name__}: {one_line(exc)[:200]}\n"
            )

    def host_allowed(self, value: str) -> bool:
        """Whether a Host header (or an Origin's host:port) names this server; see allowed_hosts."""
        value = value.strip().lower()
        if value in self.hosts:
            return True
        if not self.any_address:
            return False
        name, _, port = value.rpartition(":")
        try:
            ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
        except ValueError:
            return False
        return port == str(self.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # an address a browser can open
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(args: argparse.Namespace, static_dir: Path = STATIC) -> Server:
    """Load the models and bind the server (not yet serving: call serve_forever)."""
    try:
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except OSError as exc:
        raise ProjectError(f"--host {args.host}: {exc.strerror or exc}") from None
    predictors, missing = find_models(args.checkpoint_dir, args.dataset, device=args.device)
    try:
        return Server((args.host, args.port), family, Demo(predictors, missing, args, static_dir))
    except OSError as exc:
        raise ProjectError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; try another --port (0: any free one)"
        ) from None


def megabytes(text: str) -> float:
    """An argparse type for --max-upload-mb: a finite number of megabytes, from 0.01 to 100."""
    return in_range(float, 0.01, 100)(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="port (default: 8000, or any free one with --screenshot; 0: any free one)")
    add_models_location(p)
    p.add_argument(
        "--max-upload-mb",
        type=megabytes,
        default=float(MAX_FILE_MB),
        help=f"largest accepted upload, from 0.01 to 100 (default: {MAX_FILE_MB})",
    )
    p.add_argument("--screenshot", type=path_type, help="draw a digit in headless Chromium, save the page as PNG, exit")
    p.add_argument("--number", action="store_true", help="with --screenshot: write 2026 in number mode instead")
    args = p.parse_args(argv)
    if args.number and not args.screenshot:
        p.error("--number picks what --screenshot draws; the page itself has both modes")
    if args.port is None:  # a screenshot must not fail because a demo is already running on 8000
        args.port = 0 if args.screenshot else 8000
    if not 0 <= args.port <= 65535:
        p.error(f"--port must be in 0..65535, got {args.port}")
    return args


def _main(argv=None) -> int:
    args = parse_args(argv)
    server = make_server(args)
    if args.screenshot:
        from mnistlab.browser import screenshot

        with server:
            screenshot(server, args.screenshot, number="2026" if args.number else None)
        print(f"demo.py: saved {one_line(args.screenshot)}")
        return 0
    models = ", ".join(p.name for p in server.app.predictors) or "none yet"
    print(f"demo.py: serving {server.url} (models: {models}; Ctrl-C stops)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"demo.py: listening on {args.host}: other machines can reach this page and its models", flush=True)
    for name, command in server.app.missing:
        print(f"demo.py: {name} not trained yet: {command}", flush=True)
    with server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("demo.py: stopped")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

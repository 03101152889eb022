"""The editor's server under broken or hostile clients: malformed requests, slow and idle connections,
too many connections, uploads too large to decode, internal errors. Loopback only; every wait is bounded."""
import base64
import contextlib
import io
import json
import socket
import struct
import tempfile
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from editor import api
from editor.server import EditorServer
from editor.uploads import Busy, PixelBudget, UploadTooLarge, display_name
from tests._tiny_model import running_editor
from tests.conftest import ROOT

WAIT_S = 30  # the longest a client here waits for an answer: a bound against hanging, not a measured time


@pytest.fixture(scope="module")
def app(tiny_trained):
    with running_editor(tiny_trained, "--spse_size", "32", "--max_upload_mb", "1") as server:
        yield tiny_trained, server


@contextlib.contextmanager
def own_server(engine, **limits):
    """A second server on the same engine with other limits, on a free loopback port, in a thread."""
    server = EditorServer(engine, "127.0.0.1", 0, **limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)


def read_response(sock):
    """``(status, JSON body or None)`` of the answer on ``sock``, read until the server closes it."""
    chunks = []
    while True:
        try:
            got = sock.recv(65536)
        except ConnectionResetError:
            break
        if not got:
            break
        chunks.append(got)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/"), head[:80]
    return int(head.split(b" ", 2)[1]), (json.loads(body) if body else None)


def exchange(server, data, shutdown=False):
    """Send raw bytes on a new connection (then close our side when ``shutdown``); the answer."""
    with socket.create_connection(server.server_address[:2], timeout=WAIT_S) as sock:
        sock.sendall(data)
        if shutdown:
            sock.shutdown(socket.SHUT_WR)
        return read_response(sock)


def request(server, method, path, body=b"", headers=None):
    """A raw HTTP/1.1 request (``body`` bytes; Content-Length added unless ``headers`` set one)."""
    headers = {"Host": "127.0.0.1", **({"Content-Length": str(len(body))} if body else {}), **(headers or {})}
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return exchange(server, head.encode("latin-1") + body)


def post(server, path, payload):
    return request(server, "POST", path, payload if isinstance(payload, bytes) else json.dumps(payload).encode())


def new_session(server):
    return post(server, "/api/sessions", {})[1]["session"]


def data_url(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def assert_no_server_path(message, tiny):
    for path in (tempfile.gettempdir(), str(tiny.root), ROOT, "ssn_upload"):
        assert path not in message, message


def png_announcing(width, height):
    """PNG bytes whose header announces ``width`` x ``height`` pixels, with no real image data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"not image data") + chunk(b"IEND", b"")


def wait_until(condition, tries=300, pause=0.1):
    for _ in range(tries):
        if condition():
            return True
        time.sleep(pause)
    return False


# ------------------------------------------------------------------------------- malformed requests
def test_malformed_requests_get_a_4xx_without_server_paths(app):
    tiny, server = app
    sid = new_session(server)
    assert post(server, f"/api/sessions/{sid}/sample", {"sample": 0})[0] == 200
    action = f"/api/sessions/{sid}"
    s = tiny.samples[2]
    deep = b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}"
    cases = [  # (what, status, message part, the request)
        ("deeply nested JSON", 400, "nested too deeply", lambda: post(server, f"{action}/state", deep)),
        ("not JSON", 400, "not JSON", lambda: post(server, f"{action}/state", b"{not json")),
        ("not UTF-8", 400, "not JSON", lambda: post(server, f"{action}/state", b'{"a": "\xff"}')),
        ("a JSON list", 400, "JSON object", lambda: post(server, f"{action}/state", b"[1]")),
        ("sample Infinity", 400, "expected an index", lambda: post(server, f"{action}/sample", b'{"sample": Infinity}')),
        ("sample 1e400", 400, "expected an index", lambda: post(server, f"{action}/sample", b'{"sample": 1e400}')),
        ("sample 10**400", 400, "does not exist", lambda: post(server, f"{action}/sample", {"sample": 10 ** 400})),
        ("pick 10**400", 400, "expected two numbers", lambda: post(server, f"{action}/pick", {"x": 10 ** 400, "y": 0})),
        ("alpha 10**400", 400, "expected a number",
         lambda: post(server, f"{action}/style", {"classes": [1], "source": "sample:1", "alpha": 10 ** 400})),
        ("class '²'", 400, "not a class index or name",
         lambda: post(server, f"{action}/colour", {"classes": ["\u00b2"], "colour": "#ff0000"})),
        ("class of 5000 digits", 400, "not a class index or name",
         lambda: post(server, f"{action}/colour", {"classes": ["1" * 5000], "colour": "#ff0000"})),
        ("class [1]", 400, "not a class index or name",
         lambda: post(server, f"{action}/colour", {"classes": [[1]], "colour": "#ff0000"})),
        ("PUT", 405, "only GET and POST", lambda: request(server, "PUT", f"{action}/state", b"{}")),
        ("DELETE", 405, "only GET and POST", lambda: request(server, "DELETE", "/api/info")),
        ("a garbage request line", 400, "Bad request", lambda: exchange(server, b"GARBAGE\r\n\r\n")),
        ("a chunked body", 411, "Content-Length",
         lambda: request(server, "POST", "/api/sessions", b"2\r\n{}\r\n0\r\n\r\n", {"Transfer-Encoding": "chunked"})),
        ("Content-Length -5", 400, "bad Content-Length",
         lambda: request(server, "POST", "/api/sessions", b"", {"Content-Length": "-5"})),
        ("Content-Length abc", 400, "bad Content-Length",
         lambda: request(server, "POST", "/api/sessions", b"", {"Content-Length": "abc"})),
        ("a body shorter than its Content-Length", 400, "ended after 2 of the 50 bytes",
         lambda: exchange(server, b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{}",
                          shutdown=True)),
        ("a 70000-character URL", 414, "URI", lambda: request(server, "GET", "/" + "a" * 70000)),
        ("an unknown session", 404, "expired", lambda: post(server, "/api/sessions/nobody/state", {})),
        ("an unknown route", 404, "no such page", lambda: request(server, "GET", "/api/../../etc/passwd")),
    ]
    for colour in ("#-1-1-1", "# ff f ", "#12345g", "#1234567", "ff0000", 12, None):
        cases.append((f"colour {colour!r}", 400, "expected #rrggbb",
                      lambda c=colour: post(server, f"{action}/colour", {"classes": [1], "colour": c})))
    text = "data:text/plain;base64," + base64.b64encode(b"not an image").decode()
    for name, shown in (("..", "photo"), (".", "photo"), ("a" * 300 + ".png", "a" * 95 + "\u2026.png"),
                        ("../../../etc/passwd", "passwd"), ("C:\\temp\\x.png", "x.png")):
        cases.append((f"an unreadable upload named {name[:20]!r}", 400, f"{shown}: unreadable or corrupt image",
                      lambda n=name: post(server, f"{action}/upload", {"image": text, "image_name": n,
                                                                        "label": data_url(s.label),
                                                                        "label_name": "l.png"})))
    cases.append(("a lossy label map with a 300-character name", 400, ".jpg: label map in a lossy format",
                  lambda: post(server, f"{action}/upload", {"image": data_url(s.image), "image_name": "p.png",
                                                            "label": data_url(s.label),
                                                            "label_name": "l" * 300 + ".jpg"})))
    for what, status, message, send in cases:
        got, body = send()
        assert got == status and message in body["error"], (what, got, body)
        assert_no_server_path(body["error"], tiny)
    status, st = post(server, f"{action}/state", {})
    assert status == 200 and st["sample"] == 0 and st["edits"] == []  # nothing changed


def test_upload_names_are_shown_without_their_folders_and_clipped(app):
    tiny, server = app
    sid = new_session(server)
    s = tiny.samples[3]
    for name, shown in (("..", "photo"), ("." * 2 + "/" + "b" * 300 + ".png", "b" * 95 + "\u2026.png"),
                        ("/etc/passwd", "passwd")):
        status, st = post(server, f"/api/sessions/{sid}/upload", {"image": data_url(s.image), "image_name": name,
                                                                   "label": data_url(s.label), "label_name": ".."})
        assert status == 200 and st["upload"]["name"] == shown, st
    assert display_name(None, "photo") == "photo" and display_name("x\x00y.png", "photo") == "xy.png"
    assert len(display_name("c" * 500, "photo")) == 100


# ------------------------------------------------------------------------------- time and connections
def test_a_request_that_does_not_arrive_in_time_is_answered_408_and_frees_its_thread(app):
    tiny, main = app
    with own_server(main.engine, request_timeout=1.0) as server:
        for trickle in (False, True):
            sock = socket.create_connection(server.server_address[:2], timeout=WAIT_S)
            sock.sendall(b"POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
            stop = threading.Event()

            def drip():  # one byte every 50 ms: the body would take 50 s, far past the deadline
                for _ in range(600):
                    if stop.wait(0.05):
                        return
                    try:
                        sock.sendall(b" ")
                    except OSError:
                        return

            dripper = threading.Thread(target=drip)
            if trickle:
                dripper.start()
            try:
                status, body = read_response(sock)
            finally:
                stop.set()
                if trickle:
                    dripper.join(WAIT_S)
                sock.close()
            assert status == 408 and "--request_timeout" in body["error"], body
        assert wait_until(lambda: server.active_connections == 0)
        assert request(server, "GET", "/api/info")[0] == 200


def test_connections_beyond_the_limit_wait_then_get_503_and_the_threads_stay_bounded(app):
    tiny, main = app
    with own_server(main.engine, max_connections=3, busy_wait_s=0.2, request_timeout=WAIT_S) as server:
        baseline = threading.active_count()
        idle = [socket.create_connection(server.server_address[:2], timeout=WAIT_S) for _ in range(10)]
        try:
            status, body = request(server, "GET", "/api/info")
            assert status == 503 and "--max_connections" in body["error"]
            assert server.active_connections <= 3 and threading.active_count() - baseline <= 3
        finally:
            for sock in idle:
                sock.close()
        assert wait_until(lambda: request(server, "GET", "/api/info")[0] == 200)
        assert wait_until(lambda: server.active_connections == 0)


# ------------------------------------------------------------------------------- decoded pixels
def test_upload_pixels_are_bounded_from_the_headers_and_shared_by_all_sessions(app, monkeypatch):
    tiny, server = app
    sid = new_session(server)
    s = tiny.samples[4]
    announced = "data:image/png;base64," + base64.b64encode(png_announcing(9000, 9000)).decode()
    status, err = post(server, f"/api/sessions/{sid}/upload", {"image": announced, "image_name": "huge.png",
                                                               "label": data_url(s.label), "label_name": "l.png"})
    # refused from the header (81 megapixels against 64), before decoding would find the data broken
    assert status == 413 and "81.0 megapixels" in err["error"] and "--max_upload_mpix" in err["error"], err

    photo = np.random.default_rng(5).integers(0, 256, s.image.shape).astype(np.uint8)  # not uploaded before
    body = {"image": data_url(photo), "image_name": "fresh.png", "label": data_url(s.label), "label_name": "l.png"}
    budget = server.engine.upload_pixels
    monkeypatch.setattr(budget, "wait_s", 0.1)
    with budget.reserve(budget.max_pixels - 100, "an upload of another session"):
        status, err = post(server, f"/api/sessions/{new_session(server)}/upload", body)
        assert status == 503 and "other uploads are being decoded" in err["error"], err
    assert budget.in_use == 0
    status, st = post(server, f"/api/sessions/{sid}/upload", body)
    assert status == 200 and st["upload"]["name"] == "fresh.png"


def test_the_pixel_budget_makes_concurrent_uploads_wait():
    budget = PixelBudget(100, wait_s=WAIT_S)
    entered = threading.Event()

    def second():
        with budget.reserve(50, "b"):
            entered.set()

    with budget.reserve(80, "a"):
        thread = threading.Thread(target=second)
        thread.start()
        assert not entered.wait(0.2) and budget.in_use == 80  # 80 + 50 > 100: the second one waits
    thread.join(WAIT_S)
    assert entered.is_set() and budget.in_use == 0
    with pytest.raises(UploadTooLarge, match="0.0001 megapixels"):
        with budget.reserve(101, "c"):
            pass
    budget.wait_s = 0.05
    with budget.reserve(60, "a"):
        with pytest.raises(Busy, match="try again"):
            with budget.reserve(60, "b"):
                pass
    assert budget.in_use == 0


# ------------------------------------------------------------------------------- internal errors
def test_an_internal_error_answers_500_and_its_traceback_goes_to_stderr(app, monkeypatch, capsys):
    tiny, server = app
    assert not server.verbose
    sid = new_session(server)

    def broken(engine, session, body):
        raise ZeroDivisionError(f"a bug near {ROOT}")

    monkeypatch.setitem(api.ACTIONS, "state", broken)
    status, err = post(server, f"/api/sessions/{sid}/state", {})
    assert status == 500 and "ZeroDivisionError" in err["error"] and "keeps running" in err["error"]
    assert_no_server_path(err["error"], tiny)
    logged = capsys.readouterr().err
    assert "Traceback" in logged and f"ZeroDivisionError: a bug near {ROOT}" in logged
    assert f"POST /api/sessions/{sid}/state" in logged
    assert request(server, "GET", "/api/info")[0] == 200

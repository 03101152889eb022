"""The editor's web server: one plain HTML/JS page and a small JSON API (standard library only).

Routes (``<sid>`` is the session id the page gets when it loads, one per tab)::

    GET  /                                  the page (editor/static/index.html, editor.js, editor.css)
    GET  /api/info                          model name, classes (names, colours), samples
    GET  /api/samples/<i>/thumb.png         thumbnail of sample i's photo
    GET  /api/samples/<i>/label.png         sample i's colourised label map
    POST /api/sessions                      a new session -> {"session": id}
    GET  /api/sessions/<sid>/image.png      the current image (?download=1: as an attachment)
    GET  /api/sessions/<sid>/label.png      the current (painted) label map, colourised
    GET  /api/sessions/<sid>/label_map.png  the current label map as a label file (class indices), an attachment
    POST /api/sessions/<sid>/<action>       JSON body; answers the session's state (below)

Actions (:mod:`editor.api`): ``state`` {}, ``sample`` {"sample": i}, ``pick``
{"x": fx, "y": fy} (fractions of the label map's width and height; answers
{"class": j or null}), ``style`` {"classes": [...], "source": "sample:<i>" |
"upload:<id>", "alpha": a, "amend": bool}, ``colour`` {"classes": [...],
"colour": "#rrggbb", "amend": bool}, ``paint`` {"class": j or name, "size":
brush diameter in label pixels, "points": [[fx, fy], ...]}, ``undo`` {},
``reset`` {}, ``upload`` {"image": data URL, "image_name": str, "label": data
URL, "label_name": str} (answers the state plus {"upload": {"id", "name"}}).
Style and colour edits refuse classes that do not occur in the (painted) label map.

The state: ``{"session", "sample", "sample_name", "version", "edits": [text],
"can_undo", "present": [j], "colours": {j: "#rrggbb"}, "painted", "label_url",
"sample_label_url", "uploads": [{"id", "name"}], "image": PNG data URL (after a
render), "render_ms"}``.

Every error answers ``{"error": message}`` (no server path in it) with status
400 (bad input: the message names the file or the value), 403 (a loopback
server asked under another host name, as in DNS rebinding), 404 (unknown route
or expired session), 405 (a method other than GET and POST), 408 (the request
did not arrive within ``request_timeout``), 411 (a body without
Content-Length), 413 (a body or upload too large), 503 (all connections or
the upload pixel budget in use; try again) or 500 (a bug; the traceback is
written to stderr). The server keeps running in every case.

Limits: at most ``max_connections`` connections are served at once, one
thread each; a further one waits up to ``busy_wait_s`` for a free slot, then
gets 503. A client has ``request_timeout`` seconds to send its whole request
(line, headers and body), and a stalled write is given up after as long.
"""
import io
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from editor import api
from editor.session import SessionStore
from editor.uploads import Busy, UploadTooLarge
from util.errors import OptionError, USER_ERRORS
from util.net import is_loopback

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
                "/editor.js": ("editor.js", "text/javascript; charset=utf-8"),
                "/editor.css": ("editor.css", "text/css; charset=utf-8")}
SAMPLE_ROUTE = re.compile(r"^/api/samples/(\d{1,9})/(thumb|label)\.png$")
SESSION_ROUTE = re.compile(r"^/api/sessions/([A-Za-z0-9_-]{1,64})/([a-z_]{1,20}(?:\.png)?)$")
JSON_TYPE = "application/json; charset=utf-8"


class HTTPError(Exception):
    """An error answer: ``status`` and a message for the page."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class _DeadlineReader(io.RawIOBase):
    """Reads from a socket that end, as at the end of the stream, once ``deadline`` (``time.monotonic``) passes.

    Every read waits at most until the deadline, so a client cannot hold a
    connection by sending its request slowly; ``expired`` tells the two ends apart.
    """

    def __init__(self, sock, deadline):
        super().__init__()
        self.sock, self.deadline, self.expired = sock, deadline, False

    def readable(self):
        return True

    def readinto(self, buffer):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            return 0
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            return 0
        except ConnectionError:
            return 0  # the client went away: the same as the end of its request


def _download_name(name):
    return re.sub(r"[^\w.-]", "_", name)[:120]


class EditorServer(ThreadingHTTPServer):
    """HTTP server of the editor; sessions in :attr:`store`, limits in the module docstring.

    Args:
        engine: an :class:`editor.engine.EditorEngine`.
        host, port: where to listen (port 0: any free port; see :attr:`url`).
        max_sessions: sessions kept (least recently used dropped).
        max_body_mb: largest request body accepted (uploads travel as base64 JSON).
        verbose: log every request to stderr.
        max_connections: connections served at once (one thread each).
        request_timeout: seconds to receive a whole request, and the longest stalled write.
        busy_wait_s: how long a connection beyond ``max_connections`` waits for a slot before 503.
    """

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: connections wait there while every slot is taken

    def __init__(self, engine, host="127.0.0.1", port=0, max_sessions=32, max_body_mb=40, verbose=False,
                 max_connections=32, request_timeout=60.0, busy_wait_s=5.0):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.engine = engine
        self.store = SessionStore(max_sessions)
        self.max_body = int(max_body_mb * 1024 * 1024)
        self.verbose = bool(verbose)
        self.loopback_only = is_loopback(host)
        self.max_connections = int(max_connections)
        self.request_timeout = float(request_timeout)
        self.busy_wait_s = float(busy_wait_s)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._count_lock = threading.Lock()
        self.active_connections = 0
        self.static = {}
        for route, (filename, ctype) in STATIC_FILES.items():
            with open(os.path.join(STATIC_DIR, filename), "rb") as f:
                self.static[route] = (f.read(), ctype)
        super().__init__((host, int(port)), EditorRequestHandler)

    @classmethod
    def from_options(cls, engine, opt):
        """The server of ``opt`` (:class:`options.editor_options.EditorOptions`); :class:`OptionError` when
        the address cannot be bound."""
        try:
            return cls(engine, opt.host, opt.port, max_sessions=opt.max_sessions,
                       max_body_mb=opt.max_upload_mb * 4 / 3 + 1, verbose=opt.verbose,
                       max_connections=opt.max_connections, request_timeout=opt.request_timeout)
        except OSError as e:
            raise OptionError(f"cannot listen on {opt.host}:{opt.port} ({e}); choose another --port") from e

    @property
    def url(self):
        """The page's address, e.g. ``http://127.0.0.1:8765/``."""
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def process_request(self, request, client_address):
        """Serve the connection in a thread of its own when a slot is free within ``busy_wait_s``; else 503."""
        if not self._slots.acquire(timeout=self.busy_wait_s):
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        with self._count_lock:
            self.active_connections += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.active_connections -= 1
            self._slots.release()

    def _refuse_busy(self, sock):
        """Answer 503 on the accepting thread, without blocking it for long, and close."""
        body = json.dumps({"error": f"the editor is already serving {self.max_connections} connections "
                                    f"(--max_connections); try again in a moment"}).encode()
        head = (f"HTTP/1.0 503 Service Unavailable\r\nContent-Type: {JSON_TYPE}\r\nContent-Length: {len(body)}\r\n"
                f"Retry-After: 2\r\nConnection: close\r\n\r\n").encode()
        try:
            sock.setblocking(False)
            for _ in range(16):  # drop what has arrived, so that closing does not reset the connection
                if not sock.recv(65536):
                    break
        except OSError:
            pass
        try:
            sock.settimeout(0.5)
            sock.sendall(head + body)
        except OSError:
            pass
        finally:
            self.shutdown_request(sock)


class EditorRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to :mod:`editor.api` and the sessions (see the module docstring)."""

    server_version = "SuperStyleNetEditor/1.0"

    def setup(self):
        super().setup()
        self.rfile.close()  # replaced by a reader with a deadline for the whole request
        self._reader = _DeadlineReader(self.connection, time.monotonic() + self.server.request_timeout)
        self.rfile = io.BufferedReader(self._reader)

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        if self.server.verbose:
            super().log_message(format, *args)

    def send_error(self, code, message=None, explain=None):
        """Errors found by ``http.server`` itself (bad request line, unknown method...) as JSON; 501 -> 405."""
        headers = {}
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, message, headers = HTTPStatus.METHOD_NOT_ALLOWED, "only GET and POST are served", {"Allow": "GET, POST"}
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # an unparsable request line counts as HTTP/0.9, which has no status line
        self._send(code, JSON_TYPE, json.dumps({"error": message or HTTPStatus(code).phrase}).encode(), headers)

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._dispatch(self._get)

    def do_POST(self):  # noqa: N802
        self._dispatch(self._post)

    # ------------------------------------------------------------------ plumbing
    def _check_host(self):
        """On a loopback server, refuse requests addressed to other host names (DNS rebinding)."""
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").strip()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
        if not is_loopback(name):
            raise HTTPError(HTTPStatus.FORBIDDEN, f"requests for host {host[:100]!r} are refused: this editor "
                                                  f"listens on the loopback address only; open {self.server.url}")

    def _dispatch(self, route):
        try:
            if self._reader.expired:
                self.close_connection = True
                raise HTTPError(HTTPStatus.REQUEST_TIMEOUT, f"the request did not arrive within "
                                                            f"{self.server.request_timeout:g} s (--request_timeout)")
            self._check_host()
            status, ctype, body, headers = route(urlsplit(self.path))
        except HTTPError as e:
            status, ctype, body, headers = self._error(e.status, e)
        except UploadTooLarge as e:
            status, ctype, body, headers = self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, e)
        except Busy as e:
            status, ctype, body, headers = self._error(HTTPStatus.SERVICE_UNAVAILABLE, e)
        except USER_ERRORS as e:
            status, ctype, body, headers = self._error(HTTPStatus.BAD_REQUEST, e)
        except Exception as e:  # noqa: BLE001 -- one failing request must not stop the server
            sys.stderr.write(f"editor: internal error answering {self.command} {self.path[:200]}\n"
                             f"{traceback.format_exc()}")
            sys.stderr.flush()
            status, ctype, body, headers = self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(e).__name__}); the server keeps running "
                                                  f"and wrote the details to its log")
        self._send(status, ctype, body, headers)

    def _send(self, status, ctype, body, headers):
        try:
            self.connection.settimeout(self.server.request_timeout)  # the reads left a shorter one
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the tab went away, or stopped reading for longer than the timeout
            self.close_connection = True

    @staticmethod
    def _json(payload, status=HTTPStatus.OK):
        return status, JSON_TYPE, json.dumps(payload).encode("utf-8"), {}

    def _error(self, status, message):
        return self._json({"error": str(message)}, status)

    @staticmethod
    def _png(data, headers=None):
        return HTTPStatus.OK, "image/png", data, headers or {}

    def _read_json(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "send the request body with a Content-Length "
                                                        "(Transfer-Encoding is not accepted)")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from e
        if length < 0:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "bad Content-Length")
        if length > self.server.max_body:
            self._discard(length)
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"request of {length / 2 ** 20:.1f} MB is larger than the limit of "
                            f"{self.server.max_body / 2 ** 20:.0f} MB (--max_upload_mb)")
        raw = self.rfile.read(length) if length > 0 else b"{}"
        if len(raw) < length:
            self.close_connection = True
            if self._reader.expired:
                raise HTTPError(HTTPStatus.REQUEST_TIMEOUT, f"the request body did not arrive within "
                                                            f"{self.server.request_timeout:g} s (--request_timeout): "
                                                            f"{len(raw)} of {length} bytes")
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"the request body ended after {len(raw)} of the {length} "
                                                    f"bytes its Content-Length announced")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"request body is not JSON ({e})") from e
        except RecursionError as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "request body is nested too deeply to be a request") from e
        if not isinstance(body, dict):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return body

    def _discard(self, length, chunk=2 ** 20, most=2 ** 28):
        """Read and drop a refused body so that the client gets the answer (up to ``most`` bytes)."""
        self.close_connection = True  # whatever is left is not read; the connection is not reused
        if length > most:
            return
        while length > 0:
            got = self.rfile.read(min(chunk, length))
            if not got:
                break
            length -= len(got)

    def _session(self, session_id):
        session = self.server.store.get(session_id)
        if session is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, "this editing session has expired (the server restarted or "
                                                  "too many tabs were opened); reload the page")
        return session

    # ------------------------------------------------------------------ GET
    def _get(self, url):
        engine = self.server.engine
        if url.path in self.server.static:
            data, ctype = self.server.static[url.path]
            return HTTPStatus.OK, ctype, data, {}
        if url.path == "/api/info":
            return self._json(api.info(engine))
        m = SAMPLE_ROUTE.match(url.path)
        if m:
            index = engine.check_index(m.group(1))
            return self._png(engine.thumbnail_png(index) if m.group(2) == "thumb" else engine.label_png(index))
        m = SESSION_ROUTE.match(url.path)
        if m and m.group(2) in ("image.png", "label.png", "label_map.png"):
            session = self._session(m.group(1))
            with session.lock:
                return self._session_png(session, m.group(2), bool(parse_qs(url.query).get("download")))
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no such page: {url.path[:100]}")

    def _session_png(self, session, what, download):
        engine = self.server.engine
        if what == "image.png":
            if session.image_png is None:
                raise OptionError("nothing rendered yet: pick a sample first")
            data, name = session.image_png, f"{engine.samples[session.sample].name}_edited.png"
        else:
            data, name = api.label_png(engine, session, class_indices=what == "label_map.png")
            download = download or what == "label_map.png"
        headers = {"Content-Disposition": f'attachment; filename="{_download_name(name)}"'} if download else {}
        return self._png(data, headers)

    # ------------------------------------------------------------------ POST
    def _post(self, url):
        if url.path == "/api/sessions":
            self._read_json()
            return self._json({"session": self.server.store.create().id})
        m = SESSION_ROUTE.match(url.path)
        if not m or m.group(2) not in api.ACTIONS:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such action: {url.path[:100]}")
        body = self._read_json()
        session = self._session(m.group(1))
        with session.lock:
            return self._json(api.ACTIONS[m.group(2)](self.server.engine, session, body))


def serve(server, out=sys.stdout):
    """Print the URL and serve until interrupted (Ctrl-C); then close the socket."""
    print(f"SuperStyleNet editor ({server.engine.opt.name}, {len(server.engine.samples)} samples): "
          f"open {server.url}", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=out)
    finally:
        server.server_close()

"""The editor's web server: one plain HTML/JS page and a small JSON API (standard library only).

Routes (``<sid>`` is the session id the page gets when it loads, one per tab)::

    GET  /                                  the page (editor/static/index.html, editor.js, editor.css)
    GET  /api/info                          model name, classes (names, colours), samples
    GET  /api/samples/<i>/thumb.png         thumbnail of sample i's photo
    GET  /api/samples/<i>/label.png         sample i's colourised label map
    POST /api/sessions                      a new session -> {"session": id}
    GET  /api/sessions/<sid>/image.png      the current image (?download=1: as an attachment)
    POST /api/sessions/<sid>/<action>       JSON body; answers the session's state (below)

Actions: ``state`` {}, ``sample`` {"sample": i}, ``pick`` {"x": fx, "y": fy}
(fractions of the label map's width and height; answers {"class": j or null}),
``style`` {"classes": [...], "source": "sample:<i>" | "upload:<id>", "alpha": a,
"amend": bool}, ``colour`` {"classes": [...], "colour": "#rrggbb", "amend": bool},
``undo`` {}, ``reset`` {}, ``upload`` {"image": data URL, "image_name": str,
"label": data URL, "label_name": str} (answers the state plus {"upload": {"id", "name"}}).

The state: ``{"session", "sample", "sample_name", "version", "edits": [text],
"can_undo", "present": [j], "colours": {j: "#rrggbb"}, "uploads": [{"id", "name"}],
"image": PNG data URL (after a render), "render_ms"}``.

Every error answers ``{"error": message}`` with status 400 (bad input: the
message names the file or the value), 403 (a loopback server asked under
another host name, as in DNS rebinding), 404 (unknown route or expired
session), 413 (body too large) or 500 (a bug; the traceback goes to stderr).
The server keeps running in every case.
"""
import base64
import binascii
import contextlib
import json
import os
import re
import socket
import sys
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from editor.engine import encode_png
from editor.session import SessionStore, apply_edits, class_mean_colours, colour_hex, describe_edit, parse_colour
from util.errors import USER_ERRORS, InputError, OptionError

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
                "/editor.js": ("editor.js", "text/javascript; charset=utf-8"),
                "/editor.css": ("editor.css", "text/css; charset=utf-8")}
SAMPLE_ROUTE = re.compile(r"^/api/samples/(\d+)/(thumb|label)\.png$")
SESSION_ROUTE = re.compile(r"^/api/sessions/([A-Za-z0-9_-]+)/([a-z]+(?:\.png)?)$")


def is_loopback(host):
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HTTPError(Exception):
    """An error answer: ``status`` and a message for the page."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def decode_data_url(text, name):
    """Bytes of a ``data:...;base64,...`` URL (or plain base64); :class:`InputError` naming ``name``."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{name}: no file content received")
    payload = text.split(",", 1)[1] if text.startswith("data:") and "," in text else text
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{name}: the upload is not valid base64 ({e})") from e


class EditorServer(ThreadingHTTPServer):
    """HTTP server of the editor; one thread per request, sessions in :attr:`store`.

    Args:
        engine: an :class:`editor.engine.EditorEngine`.
        host, port: where to listen (port 0: any free port; see :attr:`url`).
        max_sessions: sessions kept (least recently used dropped).
        max_body_mb: largest request body accepted (uploads travel as base64 JSON).
        verbose: log every request to stderr.
    """

    daemon_threads = True

    def __init__(self, engine, host="127.0.0.1", port=0, max_sessions=32, max_body_mb=40, verbose=False):
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.engine = engine
        self.store = SessionStore(max_sessions)
        self.max_body = int(max_body_mb * 1024 * 1024)
        self.verbose = bool(verbose)
        self.loopback_only = is_loopback(host)
        self.static = {}
        for route, (filename, ctype) in STATIC_FILES.items():
            with open(os.path.join(STATIC_DIR, filename), "rb") as f:
                self.static[route] = (f.read(), ctype)
        super().__init__((host, int(port)), EditorRequestHandler)

    @property
    def url(self):
        """The page's address, e.g. ``http://127.0.0.1:8765/``."""
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class EditorRequestHandler(BaseHTTPRequestHandler):
    """Routes requests to the engine and the sessions (see the module docstring)."""

    server_version = "SuperStyleNetEditor/1.0"

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's signature)
        if self.server.verbose:
            super().log_message(format, *args)

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
        if not is_loopback(name.strip("[]")):
            raise HTTPError(HTTPStatus.FORBIDDEN, f"requests for host {host!r} are refused: this editor listens on "
                                                  f"the loopback address only; open {self.server.url}")

    def _dispatch(self, route):
        try:
            self._check_host()
            status, ctype, body, headers = route(urlsplit(self.path))
        except HTTPError as e:
            status, ctype, body, headers = e.status, *self._json({"error": str(e)})[1:]
        except USER_ERRORS as e:
            status, ctype, body, headers = HTTPStatus.BAD_REQUEST, *self._json({"error": str(e)})[1:]
        except Exception as e:  # noqa: BLE001 -- one failing request must not stop the server
            self.log_error("%s", traceback.format_exc())
            message = f"internal error ({type(e).__name__}: {e}); the server keeps running"
            status, ctype, body, headers = HTTPStatus.INTERNAL_SERVER_ERROR, *self._json({"error": message})[1:]
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the tab went away

    @staticmethod
    def _json(payload, status=HTTPStatus.OK):
        return status, "application/json; charset=utf-8", json.dumps(payload).encode("utf-8"), {}

    @staticmethod
    def _png(data, headers=None):
        return HTTPStatus.OK, "image/png", data, headers or {}

    def _read_json(self):
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from e
        if length > self.server.max_body:
            self._discard(length)
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"request of {length / 2 ** 20:.1f} MB is larger than the limit of "
                            f"{self.server.max_body / 2 ** 20:.0f} MB (--max_upload_mb)")
        raw = self.rfile.read(length) if length > 0 else b"{}"
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"request body is not JSON ({e})") from e
        if not isinstance(body, dict):
            raise HTTPError(HTTPStatus.BAD_REQUEST, "request body must be a JSON object")
        return body

    def _discard(self, length, chunk=2 ** 20, most=2 ** 28):
        """Read and drop a refused body so that the client gets the answer (up to ``most`` bytes)."""
        if length > most:
            self.close_connection = True  # too much to drain; the connection is not reused
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
            return self._json(info(engine))
        m = SAMPLE_ROUTE.match(url.path)
        if m:
            index = engine.check_index(m.group(1))
            return self._png(engine.thumbnail_png(index) if m.group(2) == "thumb" else engine.label_png(index))
        m = SESSION_ROUTE.match(url.path)
        if m and m.group(2) == "image.png":
            session = self._session(m.group(1))
            with session.lock:
                if session.image_png is None:
                    raise OptionError("nothing rendered yet: pick a sample first")
                headers = {}
                if parse_qs(url.query).get("download"):
                    name = engine.samples[session.sample].name
                    headers["Content-Disposition"] = f'attachment; filename="{name}_edited.png"'
                return self._png(session.image_png, headers)
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    # ------------------------------------------------------------------ POST
    def _post(self, url):
        if url.path == "/api/sessions":
            self._read_json()
            return self._json({"session": self.server.store.create().id})
        m = SESSION_ROUTE.match(url.path)
        if not m or m.group(2) not in ACTIONS:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such action: {url.path}")
        body = self._read_json()
        session = self._session(m.group(1))
        with session.lock:
            return self._json(ACTIONS[m.group(2)](self.server.engine, session, body))


# ---------------------------------------------------------------------- actions
def info(engine):
    """What the page needs once: model, classes and samples."""
    palette = engine.palette()
    return {"name": engine.opt.name, "label_nc": engine.label_nc,
            "classes": [{"index": j, "name": n, "colour": palette[j]} for j, n in enumerate(engine.class_names)],
            "samples": [{"index": i, "name": s.name} for i, s in enumerate(engine.samples)]}


def current_codes(engine, session):
    """Raw codes of the session's sample after its edits."""
    return apply_edits(engine.sample_codes(session.sample), session.edits)


def state(engine, session, codes=None):
    """The session's state for the page (see the module docstring); ``image`` only after a render."""
    out = {"session": session.id, "sample": session.sample, "version": session.version,
           "edits": [describe_edit(e, engine.class_names) for e in session.edits],
           "can_undo": bool(session.edits),
           "uploads": [{"id": k, "name": v["name"]} for k, v in session.uploads.items()]}
    if session.sample is not None:
        codes = current_codes(engine, session) if codes is None else codes
        present = engine.present_classes(session.sample)
        means = class_mean_colours(codes)
        out.update(sample_name=engine.samples[session.sample].name, present=present,
                   colours={str(j): colour_hex(means[j]) for j in present},
                   label_url=f"/api/samples/{session.sample}/label.png")
    return out


def render(engine, session):
    """Render the session's current codes; returns the state with the image."""
    codes = current_codes(engine, session)
    t0 = time.perf_counter()
    image = engine.render(session.sample, codes)
    elapsed = time.perf_counter() - t0
    session.image_png = encode_png(image)
    session.version += 1
    out = state(engine, session, codes)
    out["image"] = "data:image/png;base64," + base64.b64encode(session.image_png).decode("ascii")
    out["render_ms"] = round(elapsed * 1000)
    return out


def _classes(engine, body):
    from datasets.class_names import parse_class_list

    classes = body.get("classes")
    if not isinstance(classes, list) or not classes:
        raise OptionError("select at least one class first (click a region or tick a class)")
    return parse_class_list([str(c) for c in classes], engine.label_nc, engine.class_names, option="classes")


@contextlib.contextmanager
def _rollback(session):
    """Restore the session's sample and edits when the block fails (e.g. its render)."""
    before = (session.sample, list(session.edits))
    try:
        yield
    except BaseException:
        session.sample, session.edits = before
        raise


def _need_sample(session):
    if session.sample is None:
        raise OptionError("pick a sample first")


def action_state(engine, session, body):
    return state(engine, session)


def action_sample(engine, session, body):
    index = engine.check_index(body.get("sample"))
    with _rollback(session):
        session.select_sample(index)
        return render(engine, session)


def action_pick(engine, session, body):
    _need_sample(session)
    j = engine.pick(session.sample, body.get("x"), body.get("y"))
    return {"class": j, "name": None if j is None else engine.class_names[j]}


def action_style(engine, session, body):
    _need_sample(session)
    classes = _classes(engine, body)
    try:
        alpha = float(body.get("alpha", 1.0))
    except (TypeError, ValueError) as e:
        raise OptionError(f"alpha {body.get('alpha')!r}: expected a number") from e
    if not 0.0 <= alpha <= 1.0:
        raise OptionError(f"alpha {alpha:g}: must lie in [0, 1]")
    source = str(body.get("source", ""))
    kind, _, ident = source.partition(":")
    if kind == "sample":
        index = engine.check_index(ident)
        codes, name, present = engine.sample_codes(index), engine.samples[index].name, engine.present_classes(index)
    elif kind == "upload" and ident in session.uploads:
        upload = session.uploads[ident]
        codes, name, present = upload["codes"], upload["name"], upload["present"]
    else:
        raise OptionError(f"unknown style source {source!r}; choose a sample or upload a photo")
    missing = [engine.class_names[j] for j in classes if j not in present]
    if missing:
        raise OptionError(f"{name} has no {', '.join(missing)}, so it has no style for "
                          f"{'it' if len(missing) == 1 else 'them'}; choose another source")
    edit = {"op": "style", "classes": classes, "source": source, "source_name": name, "alpha": alpha,
            "codes": codes}
    with _rollback(session):
        session.add_edit(edit, amend=bool(body.get("amend")))
        return render(engine, session)


def action_colour(engine, session, body):
    _need_sample(session)
    edit = {"op": "colour", "classes": _classes(engine, body), "rgb": parse_colour(body.get("colour"))}
    with _rollback(session):
        session.add_edit(edit, amend=bool(body.get("amend")))
        return render(engine, session)


def action_undo(engine, session, body):
    _need_sample(session)
    with _rollback(session):
        session.undo()
        return render(engine, session)


def action_reset(engine, session, body):
    _need_sample(session)
    with _rollback(session):
        session.reset()
        return render(engine, session)


def action_upload(engine, session, body):
    image_name = str(body.get("image_name") or "photo")
    label_name = str(body.get("label_name") or "label map")
    if not body.get("image") or not body.get("label"):
        raise OptionError("choose both a photo and its label map to upload")
    codes, present = engine.upload_codes(decode_data_url(body.get("image"), image_name), image_name,
                                         decode_data_url(body.get("label"), label_name), label_name)
    upload_id = session.add_upload(image_name, codes, present)
    out = state(engine, session)
    out["upload"] = {"id": upload_id, "name": image_name}
    return out


ACTIONS = {"state": action_state, "sample": action_sample, "pick": action_pick, "style": action_style,
           "colour": action_colour, "undo": action_undo, "reset": action_reset, "upload": action_upload}


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

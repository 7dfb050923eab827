"""`fishflow browse <out>`: a local web page to listen to a run's items, filter them, see its
failures and figures, and mark takes as bad (`review/marks.jsonl`, read by the next planning).

Loopback only, and every request must carry the random token of the URL that `browse` prints
(like a notebook server): other users of a shared login node cannot reach the page or the marks.
The page is one static file with its script inline; it loads nothing from elsewhere (its
Content-Security-Policy allows only this server).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from fishflow.errors import FishflowError
from fishflow.layout import Layout
from fishflow.review.index import SCORES, ManifestIndex, Query, Snapshot, item_key
from fishflow.review.marks import Mark, add_mark, now, read_marks, remove_marks

HOST = "127.0.0.1"
MAX_PAGE = 200
MAX_BODY = 64 * 1024  # a mark is a few hundred bytes
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; media-src 'self' data:; img-src 'self' data:; frame-ancestors 'none'"
)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class BadRequest(Exception):
    """A request the page would not send: 400 with the message."""


class BrowseServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, out: Path, port: int = 0):
        self.out = Path(out).resolve()
        if not self.out.is_dir():
            raise FishflowError(f"{out}: no such output folder")
        self.layout = Layout(self.out)
        self.token = secrets.token_urlsafe(24)
        self.index = ManifestIndex(self.out)
        self.marks_lock = threading.Lock()  # one writer of the marks file at a time
        self.index.current()  # index before the URL is printed: the first page is then quick
        super().__init__((HOST, port), Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/?token={self.token}"


def _query(params: dict[str, str]) -> Query:
    def number(name: str, cast, default=None):
        value = params.get(name, "")
        if value == "":
            return default
        try:
            return cast(value)
        except ValueError:
            raise BadRequest(f"{name}={value!r} is not a number") from None

    score = params.get("score") or None
    if score is not None and score not in SCORES:
        raise BadRequest(f"score={score!r}: one of {list(SCORES)}")
    offset, limit = number("offset", int, 0), number("limit", int, 50)
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"offset >= 0 and 1 <= limit <= {MAX_PAGE}")
    return Query(
        lang=params.get("lang") or None,
        voice=params.get("voice") or None,
        status=params.get("status") or None,
        reason=params.get("reason") or None,
        score=score,
        min=number("min", float),
        max=number("max", float),
        worst_first=params.get("worst") == "1",
        offset=offset,
        limit=limit,
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Handler(BaseHTTPRequestHandler):
    server: BrowseServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        """Quiet: the audio element's range requests would fill the terminal."""

    # -- answering -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", CSP)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = 200) -> None:
        body = json.dumps(data, ensure_ascii=False).encode()
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _authorised(self, params: dict[str, str]) -> bool:
        given = params.get("token", "")
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _route(self) -> None:
        # The body first, whatever the answer: the next request on this connection follows it.
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a body of {length} bytes")
            return
        self.body = self.rfile.read(length)
        url = urlsplit(self.path)
        params = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if not self._authorised(params):
            self._error(
                HTTPStatus.FORBIDDEN, "forbidden: open the URL `fishflow browse` printed (token)"
            )
            return
        routes = {
            ("GET", "/"): self._page,
            ("GET", "/api/overview"): self._overview,
            ("GET", "/api/items"): self._items,
            ("GET", "/report"): self._report,
            ("POST", "/api/mark"): self._mark,
            ("POST", "/api/unmark"): self._unmark,
        }
        method = "GET" if self.command == "HEAD" else self.command
        try:
            if method == "GET" and url.path.startswith("/audio/"):
                self._audio(unquote(url.path).removeprefix("/"))
            elif handler := routes.get((method, url.path)):
                handler(params)
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
        except BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except FishflowError as exc:  # a marks file edited into a bad one, say
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))

    do_GET = do_HEAD = do_POST = _route

    # -- pages -----------------------------------------------------------------------------------

    def _page(self, params) -> None:
        page = resources.files("fishflow.review").joinpath("browse.html").read_bytes()
        self._send(200, page, "text/html; charset=utf-8")

    def _report(self, params) -> None:
        path = self.server.layout.report("index.html")
        if not path.is_file():
            self._error(HTTPStatus.NOT_FOUND, "no report yet (the run has not finished)")
            return
        self._send(200, path.read_bytes(), "text/html; charset=utf-8")

    def _marks(self) -> list[Mark]:
        return [mark for _, mark in read_marks(self.server.layout.marks())]

    def _overview(self, params) -> None:
        """The filters' choices and the run's figures: the report's rows where the report
        exists, else summary.json's counts."""
        layout = self.server.layout
        report = _read_json(layout.report("report.json"))
        self._json(
            {
                "out": str(self.server.out),
                **self.server.index.current().facets(),
                "figures": report["rows"] if report else None,
                "summary": _read_json(layout.summary()),
                "report": report is not None and layout.report("index.html").is_file(),
            }
        )

    def _items(self, params) -> None:
        query = _query(params)
        marks: dict[tuple[str, str, str], list[int]] = {}
        every = self._marks()
        for mark in every:
            marks.setdefault(mark.item, []).append(mark.seed)
        snapshot = self.server.index.current()
        total, lines = snapshot.select(query, {item_key(*item) for item in marks})
        rows = snapshot.read(lines)
        for row in rows:
            row["marks"] = sorted(set(marks.get((row["lang"], row["voice"], row["id"]), ())))
        self._json({"total": total, "offset": query.offset, "rows": rows, "marks": len(every)})

    # -- marks -----------------------------------------------------------------------------------

    def _body(self) -> dict:
        try:
            body = json.loads(self.body or b"{}")
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the body is not a JSON object")
        return body

    def _heard(self, body: dict) -> tuple[Snapshot, dict]:
        """The item a mark names, as the manifest has it: spoken with the seed that was heard."""
        key = tuple(body.get(name) for name in ("lang", "voice", "id"))
        if not all(isinstance(part, str) for part in key) or not isinstance(body.get("seed"), int):
            raise BadRequest("a mark names lang, voice, id (strings) and seed (an integer)")
        snapshot = self.server.index.current()
        record = snapshot.find(*key)
        if record is None or record["status"] != "ok":
            raise BadRequest(f"no spoken item {'/'.join(key)} in the manifests")
        return snapshot, record

    def _mark(self, params) -> None:
        body = self._body()
        _, record = self._heard(body)
        if record["seed"] != body["seed"]:
            raise BadRequest(
                f"{record['id']} was spoken again since (seed {record['seed']}): reload the page"
            )
        note = body.get("note") or None
        if note is not None and not isinstance(note, str):
            raise BadRequest("note: a string")
        mark = Mark(record["lang"], record["voice"], record["id"], record["seed"], now(), note)
        with self.server.marks_lock:
            add_mark(self.server.layout.marks(), mark)
        self._json({"marked": mark.as_dict()})

    def _unmark(self, params) -> None:
        body = self._body()
        _, record = self._heard(body)
        item = (record["lang"], record["voice"], record["id"])
        with self.server.marks_lock:
            removed = remove_marks(self.server.layout.marks(), item, body["seed"])
        self._json({"removed": removed})

    # -- audio -----------------------------------------------------------------------------------

    def _audio(self, relpath: str) -> None:
        """A WAV under audio/, whole or the byte range asked for (the audio element seeks)."""
        root = (self.server.out / "audio").resolve()
        path = (self.server.out / relpath).resolve()
        if not path.is_relative_to(root) or path.suffix != ".wav" or not path.is_file():
            self._error(HTTPStatus.NOT_FOUND, f"no such audio: {relpath}")
            return
        size = path.stat().st_size
        start, end, status, headers = 0, size - 1, 200, {"Accept-Ranges": "bytes"}
        if asked := self.headers.get("Range"):
            match = _RANGE.match(asked.strip())
            if match and match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            elif match and match.group(2):  # the last N bytes
                start = max(size - int(match.group(2)), 0)
            if not match or not any(match.groups()) or start > end or start >= size:
                self._send(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    b"",
                    "text/plain",
                    {"Content-Range": f"bytes */{size}"},
                )
                return
            status = HTTPStatus.PARTIAL_CONTENT
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start + 1)
        self._send(status, data, "audio/wav", headers)


def serve(out: Path, port: int, open_browser: bool) -> None:
    """The `browse` command: serve until Ctrl-C."""
    server = BrowseServer(out, port)
    print(f"fishflow browse: {server.url}", flush=True)
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

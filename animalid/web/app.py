"""The operations web app: routes from a request to an answer, with no sockets in sight.

``WebApp.handle`` takes a ``Request`` (method, path, query, headers) and
returns a ``Response`` (status, headers, body or a stream of chunks);
httpd.py puts it on a socket. Routes:

* ``/``               the live page (static HTML; ``?token=`` sets the cookie)
* ``/static/<file>``  its script, style and the vendored chart library
* ``/thumbs/<name>``  a thumbnail
* ``/events``         Server-Sent Events: new and changed rows, summaries
* ``/api/requests``   the table as JSON (filters and paging, or ``since``)
* ``/api/overview``   queue, workers, claims, errors
* ``/api/charts``     requests per minute and latency percentiles (hour, day)
* ``/metrics``        Prometheus exposition
* ``/livez`` ``/readyz``  health (open to probes without the token)
"""

from __future__ import annotations

import json
import logging
import mimetypes
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from animalid.history import ANSWERED, IMAGE_ERROR, RequestRecord
from animalid.web import charts
from animalid.web.access import Access
from animalid.web.events import KEEPALIVE_S, Closed, Event, EventHub, format_event, keepalive, retry_hint
from animalid.web.filters import BadQuery, history_query, since_query
from animalid.web.headers import SECURITY_HEADERS
from animalid.web.health import readiness_text, run_checks
from animalid.web.metrics import CONTENT_TYPE, Metrics
from animalid.web.sources import Check, HistorySource
from animalid.web.thumbnails import ThumbnailStore, thumbnail_name

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
OPEN_PATHS = ("/livez", "/readyz")  # probes may ask without the token
JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
THUMB_PENDING_S = 120.0


@dataclass
class Request:
    method: str
    target: str  # path and query, as on the request line
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True, max_num_fields=20)


@dataclass
class Response:
    status: int
    content_type: str = TEXT
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    stream: Generator[bytes, None, None] | None = None  # chunks written as they come (SSE)

    @classmethod
    def text(cls, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> "Response":
        return cls(status, TEXT, text.encode("utf-8"), headers or [])

    @classmethod
    def json(cls, data: Any, status: int = 200) -> "Response":
        return cls(status, JSON, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def render_row(record: RequestRecord, thumbnails: ThumbnailStore | None,
               now: float | None = None) -> dict[str, Any]:
    """A history row as the page and the API get it, with each photo's thumbnail URL.

    A thumbnail is made in the background after the answer, so a row answered a
    moment ago names its thumbnail before the file is there: the page retries it.
    """
    data = record.to_json()
    now = time.time() if now is None else now
    fresh = record.outcome == ANSWERED and now - record.updated < THUMB_PENDING_S
    for index, image in enumerate(data["images"]):
        name = ""
        if thumbnails is not None and thumbnails.enabled and image["result"] != IMAGE_ERROR:
            name = thumbnails.has(record.key, index) or (thumbnail_name(record.key, index) if fresh else "")
        image["thumb"] = f"/thumbs/{name}" if name else ""
    return data


class WebApp:
    """One server's page and endpoints (see the module docstring)."""

    def __init__(self, history: HistorySource, metrics: Metrics, hub: EventHub, access: Access,
                 overview: Callable[[], dict[str, Any]], checks: Sequence[Check] = (),
                 thumbnails: ThumbnailStore | None = None, clock: Callable[[], float] = time.time,
                 observations: Callable[[], dict[str, Any]] | None = None):
        self.history, self.metrics, self.hub, self.access = history, metrics, hub, access
        self.overview, self.checks, self.thumbnails = overview, list(checks), thumbnails
        self._clock = clock
        self.observations = observations  # trail cameras (web/observations.py); None: none configured
        self._routes: dict[str, Callable[[Request], Response]] = {
            "/": self._page,
            "/favicon.ico": lambda request: self._static("favicon.svg"),
            "/events": self._events,
            "/api/requests": self._requests,
            "/api/overview": lambda request: Response.json(self.overview()),
            "/api/charts": self._charts,
            "/api/observations": self._observations_json,
            "/observations": self._observations_page,
            "/metrics": self._metrics,
            "/livez": lambda request: Response.text(200, "ok\n"),
            "/readyz": self._readyz,
        }

    def render(self, record: RequestRecord) -> dict[str, Any]:
        return render_row(record, self.thumbnails)

    # -- dispatch -----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        response = self._dispatch(request)
        own = {name for name, _ in response.headers}  # a route's Cache-Control wins
        response.headers = [(n, v) for n, v in SECURITY_HEADERS if n not in own] + response.headers
        return response

    def _dispatch(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response.text(405, "only GET and HEAD\n", headers=[("Allow", "GET, HEAD")])
        path = request.path
        verbose = "verbose" in request.params
        if not (path in OPEN_PATHS and not verbose) and not self.access.allows(request.headers):
            return self._refused(request)
        try:
            if path.startswith("/static/"):
                return self._static(path[len("/static/"):])
            if path.startswith("/thumbs/"):
                return self._thumb(path[len("/thumbs/"):])
            route = self._routes.get(path)
            if route is None:
                return Response.text(404, f"no page at {path[:100]}; try / or /metrics\n")
            return route(request)
        except BadQuery as exc:
            return Response.json({"error": str(exc)}, 400)

    def _refused(self, request: Request) -> Response:
        if not self.access.needs_token:
            return Response.text(403, "this page answers requests for localhost only "
                                      "(Host header); set [web] token_env to serve other names\n")
        token = (request.params.get("token") or [""])[0]
        if request.path == "/" and self.access.accepts(token):
            # Once in the URL, then a cookie: the token leaves the address bar and history.
            return Response.text(303, "signed in\n", headers=[("Location", "/"),
                                                            ("Set-Cookie", self.access.set_cookie())])
        return Response.text(401, "a token is needed: Authorization: Bearer <token>, "
                                  "or open /?token=<token> once\n",
                             headers=[("WWW-Authenticate", 'Bearer realm="animalid"')])

    # -- routes ---------------------------------------------------------------------

    def _page(self, request: Request) -> Response:
        return self._static("index.html")

    def _static(self, name: str) -> Response:
        path = (STATIC / name).resolve()
        if not path.is_relative_to(STATIC) or not path.is_file() or name.startswith("."):
            return Response.text(404, "no such file\n")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type.endswith("javascript"):
            content_type += "; charset=utf-8"
        return Response(200, content_type, path.read_bytes(), [("Cache-Control", "max-age=300")])

    def _thumb(self, name: str) -> Response:
        path = self.thumbnails.path_of(name) if self.thumbnails is not None else None
        if path is None:
            return Response.text(404, "no such thumbnail (not kept, or pruned)\n")
        return Response(200, "image/jpeg", path.read_bytes(), [("Cache-Control", "max-age=86400")])

    def _requests(self, request: Request) -> Response:
        params = request.params
        since = since_query(params)
        if since is not None:
            # Strictly after: a script passing back next_since never gets a row twice.
            rows = [row for row in self.history.requests_since(since.since, since.limit)
                    if row.updated > since.since]
            latest = max((row.updated for row in rows), default=since.since)
            return Response.json({"rows": [self.render(row) for row in rows], "next_since": latest})
        page = self.history.request_page(history_query(params))
        return Response.json({"rows": [self.render(row) for row in page.rows], "total": page.total,
                              "more": page.more, "before": page.cursor})

    def _observations_json(self, request: Request) -> Response:
        return Response.json(self.observations() if self.observations else {"cameras": []})

    def _observations_page(self, request: Request) -> Response:
        from animalid.web.observations import render_observations

        data = self.observations() if self.observations else {"cameras": []}
        return Response(200, "text/html; charset=utf-8", render_observations(data).encode("utf-8"),
                        [("Cache-Control", "no-store"),
                         # The visits' thumbnails are data: URIs (the ledger keeps them, not the disk).
                         ("Content-Security-Policy", "default-src 'none'; img-src data:; frame-ancestors 'none'")])

    def _charts(self, request: Request) -> Response:
        name = (request.params.get("window") or ["hour"])[0]
        window = charts.WINDOWS.get(name)
        if window is None:
            raise BadQuery(f"window={name[:20]!r} is not one of {', '.join(charts.WINDOWS)}")
        now = self._clock()
        return Response.json(charts.series(self.history.request_timings(now - window.seconds), now, window))

    def _metrics(self, request: Request) -> Response:
        return Response(200, CONTENT_TYPE, self.metrics.exposition())

    def _readyz(self, request: Request) -> Response:
        status, text = readiness_text(run_checks(self.checks), "verbose" in request.params)
        return Response.text(status, text)

    def _events(self, request: Request) -> Response:
        subscription = self.hub.subscribe()
        if subscription is None:
            return Response.text(503, "too many live pages open; close one or reload later\n",
                                 headers=[("Retry-After", "10")])

        def stream() -> Generator[bytes, None, None]:
            with subscription:
                yield retry_hint()
                yield format_event(Event("summary", self.overview()))
                while True:
                    try:
                        event = subscription.next(KEEPALIVE_S)
                    except Closed:
                        return
                    yield keepalive() if event is None else format_event(event)

        return Response(200, "text/event-stream; charset=utf-8", headers=[("X-Accel-Buffering", "no")],
                        stream=stream())


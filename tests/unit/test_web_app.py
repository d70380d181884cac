"""The operations web app (animalid/web/app.py) driven without a socket: routes, access, headers."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from animalid.history import ANSWERED, HistoryPage, HistoryQuery, RequestRecord, Timing
from animalid.web.access import COOKIE, Access
from animalid.web.app import Request, WebApp
from animalid.web.events import EventHub
from animalid.web.metrics import Metrics
from animalid.web.sources import Check

HOSTILE = '<img src=x onerror="alert(1)">'


class History:
    """Rows in memory, shaped like the ledger's history."""

    def __init__(self, rows: list[RequestRecord]):
        self.rows = rows
        self.queries: list[HistoryQuery] = []

    def request_page(self, query: HistoryQuery) -> HistoryPage:
        self.queries.append(query)
        rows = sorted(self.rows, key=lambda r: (r.arrived, r.key), reverse=True)
        return HistoryPage(rows[:query.limit], len(rows), len(rows) > query.limit)

    def requests_since(self, since: float, limit: int = 100) -> list[RequestRecord]:
        return [r for r in self.rows if r.updated >= since][:limit]

    def request_timings(self, since: float) -> list[Timing]:
        return [Timing(r.arrived, r.seconds, r.outcome) for r in self.rows if r.arrived >= since]

    def request_counts(self, since: float) -> dict[str, int]:
        return {ANSWERED: len(self.rows)}


NOW = time.time()
ROWS = [RequestRecord(key=f"imap:1:{n}", arrived=NOW - 60 * n, updated=NOW - 60 * n + 1, sender="a@x.test",
                      subject=HOSTILE if n == 0 else f"photo {n}", outcome=ANSWERED, seconds=0.4, worker="w")
        for n in range(3)]


def make_app(token: str = "", checks=(), history=None) -> WebApp:
    return WebApp(history or History(list(ROWS)), Metrics(process=False), EventHub(), Access(token),
                  overview=lambda: {"queue_depth": 0}, checks=checks)


def get(app: WebApp, target: str, **headers) -> tuple[int, dict, bytes]:
    headers.setdefault("Host", "127.0.0.1:8470")
    response = app.handle(Request("GET", target, headers))
    body = response.body if response.stream is None else next(response.stream)
    return response.status, dict(response.headers) | {"Content-Type": response.content_type}, body


def test_every_answer_carries_a_strict_csp():
    status, headers, body = get(make_app(), "/")
    assert status == 200 and b"<script" in body and b"onerror" not in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in body.decode() and "style=" not in body.decode()  # nothing inline


def test_rows_come_as_json_text_with_hostile_subjects_untouched():
    status, headers, body = get(make_app(), "/api/requests?limit=2")
    data = json.loads(body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert data["rows"][0]["subject"] == HOSTILE and data["total"] == 3 and data["more"]
    assert data["before"].endswith("~imap:1:1")


def test_since_returns_rows_changed_strictly_after():
    app = make_app()
    _, _, body = get(app, f"/api/requests?since={ROWS[1].updated!r}")
    assert [row["key"] for row in json.loads(body)["rows"]] == ["imap:1:0"]


@pytest.mark.parametrize("target, words", [
    ("/api/requests?outcome=lost", "outcome='lost'"),
    ("/api/requests?limit=5000", "limit='5000'"),
    ("/api/requests?since=soon", "since='soon'"),
    ("/api/requests?before=x", "before"),
    ("/api/requests?date=31.12.2026", "YYYY-MM-DD"),
    ("/api/charts?window=year", "window='year'"),
])
def test_a_bad_query_is_a_400_naming_the_parameter(target, words):
    status, _, body = get(make_app(), target)
    assert status == 400 and words in json.loads(body)["error"]


def test_static_files_stay_inside_the_static_folder():
    app = make_app()
    assert get(app, "/static/app.js")[0] == 200
    assert get(app, "/static/vendor/uPlot.iife.min.js")[0] == 200
    for target in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/.hidden", "/thumbs/../../x"):
        assert get(app, target)[0] == 404, target


def test_without_a_token_only_loopback_host_names_are_served():
    app = make_app()
    assert get(app, "/api/requests", Host="localhost:8470")[0] == 200
    assert get(app, "/api/requests", Host="[::1]:8470")[0] == 200
    status, _, body = get(app, "/api/requests", Host="rebind.attacker.test:8470")  # DNS rebinding
    assert status == 403 and b"localhost only" in body


def test_with_a_token_a_bearer_header_or_the_cookie_is_needed():
    app = make_app(token="s3cret-token")
    assert get(app, "/metrics", Host="ops.example.test")[0] == 401
    assert get(app, "/metrics", Host="ops.example.test", Authorization="Bearer wrong")[0] == 401
    assert get(app, "/metrics", Host="ops.example.test", Authorization="Bearer s3cret-token")[0] == 200
    status, headers, _ = get(app, "/?token=s3cret-token", Host="ops.example.test")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=s3cret-token") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert get(app, "/api/requests", Host="x", Cookie=f"{COOKIE}=s3cret-token")[0] == 200
    assert get(app, "/livez", Host="x")[0] == 200  # probes need no token
    assert get(app, "/readyz?verbose", Host="x")[0] == 401  # the details do


def test_readyz_names_the_failing_check_and_verbose_lists_all():
    def broken():
        raise ConnectionError("ledger host unreachable")

    app = make_app(checks=[Check("mailbox", lambda: ""), Check("ledger", broken),
                           Check("model", lambda: "not loaded yet")])
    status, _, body = get(app, "/readyz")
    assert status == 503 and body.startswith(b"not ready: ledger: ConnectionError: ledger host unreachable")
    status, _, body = get(app, "/readyz?verbose")
    lines = body.decode().splitlines()
    assert status == 503 and lines[0] == "[+]mailbox ok" and lines[2] == "[-]model failed: not loaded yet"
    assert get(make_app(checks=[Check("mailbox", lambda: "")]), "/readyz")[:1] == (200,)


def test_metrics_parse_with_the_official_parser():
    app = make_app()
    app.metrics.request_finished(ANSWERED, 0.7, ["identified", "no_animal"])
    status, headers, body = get(app, "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    answered = [s for s in families["animalid_requests"].samples
                if s.name == "animalid_requests_total" and s.labels == {"outcome": ANSWERED}]
    assert answered[0].value == 1.0


def test_the_event_stream_starts_with_a_retry_hint_and_a_summary():
    app = make_app()
    response = app.handle(Request("GET", "/events", {"Host": "localhost"}))
    assert response.content_type.startswith("text/event-stream")
    assert next(response.stream).startswith(b"retry: ")
    assert next(response.stream) == b'event: summary\ndata: {"queue_depth":0}\n\n'
    app.hub.close()
    assert list(response.stream) == []
    assert app.hub.subscribers == 0


def test_other_methods_and_paths():
    app = make_app()
    response = app.handle(Request("POST", "/api/requests", {"Host": "localhost"}))
    assert response.status == 405 and ("Allow", "GET, HEAD") in response.headers
    assert get(app, "/nothing")[0] == 404

"""The pure parts of the operations page: events, charts, access, thumbnails, filters, metrics."""

from __future__ import annotations

import io
import logging
import os
import socket

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from animalid.history import (
    ANSWERED,
    IDENTIFIED,
    IMAGE_ERROR,
    NOT_IDENTIFIED,
    WORKING,
    ImageResult,
    RequestRecord,
    Timing,
)
from animalid.web import charts
from animalid.web.access import Access, host_of, is_loopback_host, token_matches
from animalid.web.errorlog import RecentErrors
from animalid.web.events import Event, EventHub, format_event
from animalid.web.feed import LiveFeed
from animalid.web.filters import BadQuery, history_query, since_query
from animalid.web.httpd import bind, split_listen
from animalid.web.metrics import Metrics
from animalid.web.settings import WebSettings
from animalid.web.thumbnails import ThumbnailStore, make_thumbnail, thumbnail_name

# -- events -------------------------------------------------------------------------

def test_an_event_is_one_data_line_whatever_the_text_holds():
    wire = format_event(Event("row", {"subject": "a\r\n\nevent: fake\ndata: x"}), 7).decode()
    assert wire.startswith("id: 7\nevent: row\ndata: {") and wire.endswith("}\n\n")
    assert wire.count("\n") == 4  # id, event, data, blank line


def test_a_reader_that_falls_behind_is_dropped_not_buffered_forever():
    hub = EventHub(max_subscribers=2, queue_size=3)
    slow, quick = hub.subscribe(), hub.subscribe()
    assert slow is not None
    assert hub.subscribe() is None  # the limit of open streams
    for n in range(3):
        hub.publish("row", {"n": n})
    assert quick.next(0.1).data == {"n": 0}
    hub.publish("row", {"n": 3})  # slow's queue is full: dropped
    assert hub.subscribers == 1
    hub.close()
    assert [quick.next(0.1).data["n"] for _ in range(3)] == [1, 2, 3]


# -- charts -------------------------------------------------------------------------

def test_percentiles_are_nearest_rank():
    values = sorted(float(n) for n in range(1, 101))
    assert charts.percentile(values, 50) == 50.0 and charts.percentile(values, 99) == 99.0
    assert charts.percentile([3.0], 90) == 3.0


def test_series_bucket_requests_and_latency():
    now = 10_000 * 60.0 + 30
    timings = [Timing(now - 10, 1.0, ANSWERED), Timing(now - 20, 3.0, ANSWERED),
               Timing(now - 70, None, "refused"), Timing(now - 4000, 9.0, ANSWERED)]
    data = charts.series(timings, now, charts.WINDOWS["hour"])
    assert len(data["times"]) == 60 and data["total"] == 3
    assert data["per_minute"][-1] == 2 and data["p50"][-1] == 1.0 and data["p99"][-1] == 3.0
    assert data["per_minute"][-2] == 1 and data["p50"][-2] is None
    day = charts.series(timings, now, charts.WINDOWS["day"])
    assert len(day["times"]) == 96 and day["total"] == 4 and day["per_minute"][-1] == pytest.approx(3 / 15)


# -- access -------------------------------------------------------------------------

@pytest.mark.parametrize("header, host", [("127.0.0.1:8470", "127.0.0.1"), ("[::1]:8470", "::1"),
                                          ("localhost", "localhost"), ("::1", "::1")])
def test_host_header_parsing(header, host):
    assert host_of(header) == host and is_loopback_host(host)


def test_loopback_and_tokens():
    assert not is_loopback_host("10.0.0.1") and not is_loopback_host("localhost.evil.test")
    assert token_matches("abc", "abc") and not token_matches("abd", "abc") and not token_matches("", "")
    assert not Access("").accepts("") and Access("t").accepts("t")


# -- settings and binding -------------------------------------------------------------

def test_listen_elsewhere_than_loopback_needs_a_token():
    with pytest.raises(ValueError, match="token_env or token_command"):
        WebSettings(listen="0.0.0.0:8470")
    assert WebSettings(listen="0.0.0.0:8470", token="t").address == ("0.0.0.0", 8470)
    assert not WebSettings(listen="").enabled
    assert split_listen("[::1]:9000") == ("::1", 9000) and split_listen(":9000") == ("127.0.0.1", 9000)
    with pytest.raises(ValueError, match="host:port"):
        split_listen("8470")


def test_a_taken_port_moves_to_the_next_and_none_free_serves_none(caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        server = bind(None, "127.0.0.1", port, tries=5)
        assert server is not None and server.port != port and "was taken" in server.note
        server.close()
        with caplog.at_level(logging.WARNING):
            assert bind(None, "127.0.0.1", port, tries=1) is None
        assert "runs without its page" in caplog.text
    finally:
        taken.close()


# -- thumbnails -------------------------------------------------------------------------

def jpeg(width: int, height: int, orientation: int | None = None) -> bytes:
    image = Image.new("RGB", (width, height), (200, 120, 40))
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # camera make: must not survive
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_thumbnails_are_small_upright_and_carry_no_metadata():
    data = make_thumbnail(jpeg(1200, 800, orientation=6))  # rotated 90 degrees
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and max(image.size) <= 160
        assert image.size[1] > image.size[0]  # turned upright
        assert not image.getexif()
    with pytest.raises(ValueError, match="cannot make a thumbnail"):
        make_thumbnail(b"<html>not a photo</html>")


def test_thumbnail_store_names_retention_and_none_kept_at_zero(tmp_path):
    now = [1_000_000.0]
    store = ThumbnailStore(tmp_path / "thumbs", keep_days=2, clock=lambda: now[0])
    name = store.save("imap:1:5", 0, jpeg(300, 300))
    assert name == thumbnail_name("imap:1:5", 0) and store.has("imap:1:5", 0) == name
    assert store.path_of(name) is not None
    assert store.path_of("../" + name) is None and store.path_of("x.jpg") is None
    os.utime(store.folder / name, (now[0] - 3 * 86400, now[0] - 3 * 86400))
    store.save("imap:1:6", 0, jpeg(300, 300))
    assert store.prune() == 1 and store.has("imap:1:6", 0) and not store.has("imap:1:5", 0)
    off = ThumbnailStore(tmp_path / "none", keep_days=0)
    assert off.save("k", 0, jpeg(10, 10)) == "" and not (tmp_path / "none").exists()


def test_thumbnails_in_the_background(tmp_path):
    store = ThumbnailStore(tmp_path, keep_days=1)
    store.submit("k", [jpeg(50, 50), b"", b"junk"])
    assert store.drain(10)
    store.close()
    assert store.has("k", 0) and not store.has("k", 1) and not store.has("k", 2)


# -- filters ------------------------------------------------------------------------

def test_filters_read_from_the_query_string():
    query = history_query({"outcome": ["answered"], "sender": [" Ann "], "from": ["10"], "to": ["20"],
                           "limit": ["25"], "before": ["15.5~imap:1:2"]})
    assert (query.outcome, query.sender, query.start, query.end, query.limit) == ("answered", "Ann", 10, 20, 25)
    assert query.before == (15.5, "imap:1:2")
    day = history_query({"date": ["2026-12-06"]})
    assert day.end - day.start in (82800, 86400, 90000)
    assert since_query({"since": ["12.5"]}).since == 12.5 and since_query({}) is None
    with pytest.raises(BadQuery, match="from must be a finite number"):
        history_query({"from": ["inf"]})


# -- metrics and records ------------------------------------------------------------

def test_each_server_has_its_own_registry_and_no_address_labels():
    one, two = Metrics("1", "m", "torch", process=False), Metrics("1", "m", "torch", process=False)
    one.request_finished(ANSWERED, 2.0, [IDENTIFIED])
    one.reconnected()
    one.watch(lambda: 7, lambda: 2)
    text = one.exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("animalid_requests_total", (("outcome", "answered"),))] == 1
    assert values[("animalid_requests_total", (("outcome", "refused"),))] == 0
    assert values[("animalid_images_total", (("result", "identified"),))] == 1
    assert values[("animalid_request_duration_seconds_count", ())] == 1
    assert values[("animalid_queue_depth", ())] == 7 and values[("animalid_claims_held", ())] == 2
    assert values[("animalid_mailbox_reconnects_total", ())] == 1
    assert values[("animalid_build_info", (("backend", "torch"), ("model", "m"), ("version", "1")))] == 1
    labels = {name for f in families.values() for s in f.samples for name in s.labels}
    assert labels <= {"outcome", "result", "le", "version", "model", "backend"}
    assert "animalid_requests_total{outcome=\"answered\"} 0.0" in two.exposition().decode()


def test_image_results_from_answers():
    tiger = {"file": "t.png", "common_name": "Tiger", "scientific_name": "Panthera tigris", "rank": "species",
             "probability": 97.0, "dangerous": True, "endangered": "Endangered"}
    result = ImageResult.from_answer(tiger)
    assert result.result == IDENTIFIED and result.flags == ("DANGEROUS", "ENDANGERED") and result.threatened
    assert result.headline.startswith("Tiger (Panthera tigris), 97%")
    assert ImageResult.from_answer({"file": "x", "common_name": "Could not identify", "rank": "none",
                                    "probability": 12.0}).result == NOT_IDENTIFIED
    assert ImageResult.from_answer({"file": "x", "error": "not an image"}).result == IMAGE_ERROR
    with pytest.raises(ValueError, match="unknown outcome"):
        RequestRecord(key="k", arrived=0, outcome="lost")


# -- the feed and the error log -----------------------------------------------------------

def test_the_feed_sends_each_change_once_and_sees_other_workers_rows():
    rows: list[RequestRecord] = []

    class History:
        def requests_since(self, since, limit=100):
            return [r for r in rows if r.updated >= since][:limit]

    hub = EventHub()
    stream = hub.subscribe()
    now = [1000.0]
    feed = LiveFeed(History(), hub, lambda r: {"key": r.key, "outcome": r.outcome},
                    lambda: {"summary": True}, clock=lambda: now[0])
    rows.append(RequestRecord(key="a", arrived=999, outcome=WORKING, worker="other", updated=999.5))
    assert feed.look() == 1
    assert feed.look() == 0  # already sent
    rows[0] = RequestRecord(key="a", arrived=999, outcome=ANSWERED, worker="other", updated=1001.0)
    now[0] += 5  # the next summary is due
    assert feed.look() == 1
    events = []
    while (event := stream.next(0.01)) is not None:
        events.append((event.kind, event.data))
    assert events == [("row", {"key": "a", "outcome": WORKING}), ("summary", {"summary": True}),
                      ("row", {"key": "a", "outcome": ANSWERED}), ("summary", {"summary": True})]


def test_recent_errors_counts_the_last_hour():
    now = [5000.0]
    errors = RecentErrors(clock=lambda: now[0])
    logger = logging.getLogger("animalid.test.errors")
    logger.addHandler(errors)
    try:
        logger.warning("lost the connection to %s", "imap.example.test")
        logger.info("not kept")
        now[0] += 4000
        logger.error("classifier failed:\nboom")
        summary = errors.summary()
    finally:
        logger.removeHandler(errors)
    assert summary["count"] == 1 and summary["latest"][0]["text"] == "classifier failed: boom"


def test_the_server_on_a_socket_streams_events_and_stops_with_them_open():
    import urllib.request

    from animalid.history import HistoryPage
    from animalid.web.app import WebApp

    class History:
        def request_page(self, query):
            return HistoryPage()

    hub = EventHub()
    app = WebApp(History(), Metrics(process=False), hub, Access(""), overview=lambda: {"queue_depth": 4})
    server = bind(app, "127.0.0.1", 0, on_close=hub.close).start()
    try:
        with urllib.request.urlopen(server.url + "livez", timeout=10) as response:
            assert response.status == 200 and response.read() == b"ok\n"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        request = urllib.request.Request(server.url + "events", method="HEAD")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = urllib.request.urlopen(server.url + "events", timeout=10)
        assert stream.readline().startswith(b"retry:")
        stream.readline()
        assert stream.readline() == b"event: summary\n"
        assert stream.readline() == b'data: {"queue_depth":4}\n'
    finally:
        server.close()  # ends the open stream rather than waiting for it
    assert stream.read() == b"\n"  # the blank line that ended the last event, then EOF
    stream.close()


def test_operations_keep_thumbnails_of_answered_requests_only(tmp_path):
    from animalid.history import REFUSED
    from animalid.web.operations import Operations
    from animalid.web.sources import LocalState

    class Nothing:
        def requests_since(self, since, limit=100):
            return []

    operations = Operations(WebSettings(listen="", keep_days=1, thumbnails=tmp_path), Nothing(), Nothing(),
                            LocalState("w", lambda: 0, lambda: 0), Metrics(process=False))
    operations.request_finished("imap:1:1", REFUSED, None, [], [jpeg(40, 40)])
    operations.request_finished("imap:1:2", ANSWERED, 1.5, [{"file": "a.jpg", "error": "too large"}],
                                [jpeg(40, 40)])
    assert operations.thumbnails.drain(10)
    operations.close()
    assert not operations.thumbnails.has("imap:1:1", 0) and operations.thumbnails.has("imap:1:2", 0)
    text = operations.metrics.exposition().decode()
    assert 'animalid_requests_total{outcome="refused"} 1.0' in text
    assert 'animalid_images_total{result="error"} 1.0' in text


def test_thumbnails_wait_while_the_classifier_works_then_say_so(tmp_path):
    checks = iter([True, True, False])
    saved = []
    store = ThumbnailStore(tmp_path, keep_days=1, busy=lambda: next(checks, False),
                           on_saved=lambda key, index, name: saved.append((key, index, name)))
    store.submit("imap:1:3", [jpeg(30, 30)])
    assert store.drain(10)
    store.close()
    assert saved == [("imap:1:3", 0, thumbnail_name("imap:1:3", 0))]


def test_a_huge_photo_that_cannot_be_decoded_small_gets_no_thumbnail():
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Only the header of a 6000x6000 PNG: refused from its size, before any decoding.
    header = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 6000, 6000, 8, 2, 0, 0, 0))
    with pytest.raises(ValueError, match="6000x6000 PNG is too large for a thumbnail"):
        make_thumbnail(header + chunk(b"IEND", b""))

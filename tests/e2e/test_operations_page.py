"""The operations page end to end: a real browser, the real hub, the real classifier.

Headless Chromium from Debian, driven by Selenium through Debian's
chromium-driver (animalid/testing/browser.py), loads the page of a server
running in a thread while three photos go through the hub; the rows must
appear without a reload, a hostile subject must show as text, and the
thumbnails must load. /metrics is read with prometheus_client's own parser and
its counts compared with the ledger. Then two server.py processes share one
mailbox, and each one's page must show every request. The screenshot is saved
in the test's folder (and to $ANIMALID_SCREENSHOT when that is set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from animalid.cli.operations import start_operations
from animalid.history import ANSWERED
from animalid.mail.messages import build_request
from animalid.testing.browser import browser_missing, headless_chromium
from animalid.testing.harness import (
    CLIENTS,
    ServerProcess,
    empty_mailbox,
    ledger_records,
    make_config,
    photo,
    run_cli,
    running_server,
    submit,
    wait_for,
)
from animalid.web.settings import WebSettings

pytestmark = pytest.mark.e2e

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'
PHOTOS = ("tiger.png", "dog.png", "bison.png")
ROWS_JS = """return [...document.querySelectorAll('#rows tr')].map(tr => ({
  outcome: tr.querySelector('.outcome').textContent,
  subject: tr.querySelector('td.subject').textContent,
  thumbs: [...tr.querySelectorAll('.photo img')].filter(i => i.complete && i.naturalWidth > 0).length}));"""


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def samples(metrics_text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, through the official parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(metrics_text) for sample in family.samples}


def send(hub, client: str, name: str, subject: str) -> str:
    request = build_request(hub.address(client), hub.server, [(name, photo(name))])
    del request["Subject"]
    request["Subject"] = subject
    submit(hub, hub.address(client), request)
    return request["Message-ID"]


@pytest.mark.skipif(bool(browser_missing()), reason=browser_missing() or "browser present")
def test_the_page_shows_requests_live_escaped_and_metrics_match_the_ledger(mailhub, configs, classifier,
                                                                        tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    config = configs(receive="imap", server_receive="imap")
    web = WebSettings(listen="127.0.0.1:0", keep_days=1, thumbnails=tmp_path / "thumbs")
    with running_server(config, classifier) as server:
        operations = start_operations(server, web, "balanced", "torch")
        try:
            url = operations.url
            with headless_chromium() as driver:
                wait = WebDriverWait(driver, 120, poll_frequency=0.2)
                driver.get(url)
                wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
                wait.until(lambda d: "no requests match" in d.find_element(By.ID, "count").text)
                driver.execute_script("window.notReloaded = true;")
                subjects = [HOSTILE, "Garden camera: dog?", "Bison at the fence"]
                ids = [send(mailhub, CLIENTS[n % 2], name, subject)
                       for n, (name, subject) in enumerate(zip(PHOTOS, subjects))]

                # Read in one script: rows are replaced as they change (no stale elements).
                rows = wait.until(lambda d: (lambda r: r if sum(x["outcome"] == "answered" for x in r) == 3
                                             else None)(d.execute_script(ROWS_JS)))
                assert driver.execute_script("return window.notReloaded === true;"), "the page reloaded"
                assert HOSTILE in [row["subject"] for row in rows]  # as text: the markup was not run
                assert driver.execute_script("return document.querySelectorAll('#rows img[src=\"x\"]').length;") == 0
                assert driver.title == "Animal ID · operations"
                assert driver.find_elements(By.CSS_SELECTOR, "#rows .badge.danger")  # the tiger
                wait.until(lambda d: sum(row["thumbs"] for row in d.execute_script(ROWS_JS)) == 3)
                wait.until(lambda d: d.find_element(By.ID, "answered").text == "3")
                wait.until(lambda d: "3 request(s)" in d.find_element(By.ID, "chartnote").text)  # charts redrawn
                screenshot = tmp_path / "operations.png"
                driver.save_screenshot(str(screenshot))
                if os.environ.get("ANIMALID_SCREENSHOT"):
                    shutil.copy(screenshot, os.environ["ANIMALID_SCREENSHOT"])
                errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
                          and "/thumbs/" not in entry["message"]]  # a retried thumbnail may 404 once
                assert errors == []  # no CSP violation, no script error

            # /metrics, read with the official parser, against the ledger.
            status, content_type, text = fetch(url + "metrics")
            assert status == 200 and content_type.startswith("text/plain; version=")
            values = samples(text)
            records = ledger_records(config)
            answered = sum(1 for message_id in ids if records.get(message_id, ("",))[0] == ANSWERED)
            assert answered == 3
            assert values[("animalid_requests_total", (("outcome", "answered"),))] == answered
            assert values[("animalid_request_duration_seconds_count", ())] == answered
            assert sum(value for (name, _), value in values.items() if name == "animalid_images_total") == 3
            assert values[("animalid_classify_duration_seconds_count", ())] >= 1
            assert values[("animalid_build_info", (("backend", "torch"), ("model", "balanced"),
                                                   ("version", "0.2.0")))] == 1
            assert not re.search(r"@|Message-ID|<[^>]+@", text)  # no address or id in any label

            # Health and the scripts' API.
            assert fetch(url + "livez")[:1] == (200,)
            status, _, text = fetch(url + "readyz?verbose")
            assert status == 200 and "[+]mailbox ok" in text and "[+]model ok" in text
            status, _, text = fetch(url + "api/requests?since=0&limit=10")
            rows = json.loads(text)["rows"]
            assert {row["message_id"] for row in rows} == set(ids)
            assert HOSTILE in {row["subject"] for row in rows}
            assert all(row["seconds"] > 0 and row["worker"] == server.worker for row in rows)

            # server.py --status names the page.
            status_run = run_cli("server.py", "--status", "--config", str(config))
            assert status_run.returncode == 0, status_run.stderr
            assert url in status_run.stdout
        finally:
            operations.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_each_page_shows_every_request(mailhub, tmp_path):
    port = free_port()
    settings = dict(receive="imap", server_receive="imap", rate_limit_per_hour=0, claim_lease=10,
                    classifier_settings={"threads": 1}, web_settings={"listen": f"127.0.0.1:{port}"})
    config = make_config(mailhub, tmp_path, CLIENTS[0], name="workers.ini", **settings)
    empty_mailbox(config, "server")
    for client in CLIENTS[:2]:
        empty_mailbox(make_config(mailhub, tmp_path, client, name=f"{client}.ini", **settings), "client")
    workers = [ServerProcess(config, tmp_path / f"worker{n}.log") for n in range(2)]
    try:
        for worker in [w.start(wait=False) for w in workers]:
            worker.wait_started()
        pages = []
        for worker in workers:
            found = re.findall(r"operations page at (http://\S+?/)", worker.log_text())
            assert found, worker.log_text()[-2000:]
            pages.append(found[-1])
        assert len(set(pages)) == 2  # the second took the next port, and did not exit
        assert pages[0].endswith(f":{port}/") or pages[1].endswith(f":{port}/")
        ids = {send(mailhub, CLIENTS[n % 2], PHOTOS[n % 3], f"request {n}") for n in range(4)}
        wait_for(lambda: all(ledger_records(config).get(m, ("",))[0] == ANSWERED for m in ids),
                 timeout=240, what="every request answered")
        for page in pages:
            rows = json.loads(fetch(page + "api/requests?limit=50")[2])["rows"]
            assert {row["message_id"] for row in rows if row["outcome"] == ANSWERED} >= ids, page
        by_page = [samples(fetch(page + "metrics")[2])[("animalid_requests_total", (("outcome", "answered"),))]
                   for page in pages]
        assert sum(by_page) == 4  # each counts its own; together, the ledger's
        status = run_cli("server.py", "--status", "--config", str(config))
        assert all(page in status.stdout for page in pages), status.stdout
        for worker in workers:
            assert "Traceback" not in worker.log_text(), worker.log_text()[-3000:]
    finally:
        for worker in workers:
            worker.stop()

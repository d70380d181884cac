"""Setting up and waiting: ports and folders that follow [hub], path errors that say what
a path is relative to, server texts without b'...', the client's progress and hint, and
its record of requests still waiting for an answer. No network."""

from __future__ import annotations

import io
import json
import time

import pytest

from animalid.cli import settings as edge
from animalid.cli.client import HINT_AFTER_S, Progress
from animalid.client.pending import MAX_AGE_S, PendingRecord
from animalid.config import load_config
from animalid.errors import ConfigError
from animalid.mail.headers import server_text


def write(tmp_path, text: str, name: str = "settings.ini"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def hub_folder(tmp_path):
    """A hub state folder with its CA file, as the hub leaves it."""
    folder = tmp_path / "hubstate"
    folder.mkdir()
    (folder / "ca.pem").write_text("not read here")
    return folder


# -- one edit moves the hub -----------------------------------------------------------------

def test_ports_follow_the_hub_offset_and_paths_its_folder(tmp_path, hub_folder):
    config = load_config(write(tmp_path, "[hub]\nstate_dir = hubstate\nport_offset = 3000\n"))
    assert [(e.host, e.port, e.ca_file) for e in (edge.endpoint(config, p)
                                                 for p in ("smtp", "imap", "pop3"))] == [
        ("localhost", 3587, str(hub_folder / "ca.pem")),
        ("localhost", 3993, str(hub_folder / "ca.pem")),
        ("localhost", 3995, str(hub_folder / "ca.pem"))]
    assert config.section("server").get_path("state_file") == hub_folder / "server-state.sqlite"
    assert config.section("client").value("password_command") == "cat hubstate/secrets/client1"


def test_the_offset_applies_to_the_hub_only_and_an_explicit_port_wins(tmp_path, hub_folder):
    text = ("[hub]\nstate_dir = hubstate\nport_offset = 2000\nlisten = 192.168.1.10\n"
            "[smtp]\nhost = 192.168.1.10\nsecurity = tls\n"
            "[imap]\nhost = imap.gmail.com\nca_file =\n"
            "[pop3]\nhost = localhost\nport = 1995\n")
    config = load_config(write(tmp_path, text))
    assert edge.endpoint(config, "smtp").port == 2465  # the hub on the LAN: 465 + offset
    assert edge.endpoint(config, "imap").port == 993  # a provider: the standard port
    assert edge.endpoint(config, "pop3").port == 1995  # written: as written
    assert edge.hub_port_offset(config, "localhost") == 0  # the hub listens on the LAN address only
    wildcard = load_config(write(tmp_path, "[hub]\nlisten = 0.0.0.0\nport_offset = 5\n", "w.ini"))
    assert edge.hub_port_offset(wildcard, "127.0.0.1") == 5 and edge.hub_port_offset(wildcard, "::1") == 5


def test_references_name_known_settings_one_level_deep(tmp_path):
    bad = load_config(write(tmp_path, "[server]\nstate_file = ${hub:state_folder}/x.sqlite\n"))
    with pytest.raises(ConfigError, match=r"\[server\] state_file: \$\{hub:state_folder\} names no setting"):
        bad.section("server").get_path("state_file")
    nested = load_config(write(tmp_path, "[hub]\nstate_dir = ${hub:domain}\n", "n.ini"))
    with pytest.raises(ConfigError, match="references are one level deep"):
        nested.section("server").get_path("state_file")


def test_a_missing_ca_file_names_the_resolved_path_and_what_it_is_relative_to(tmp_path):
    config = load_config(write(tmp_path, "[hub]\nstate_dir = elsewhere\n"))
    with pytest.raises(ConfigError) as caught:
        edge.endpoint(config, "imap")
    text = str(caught.value)
    assert f"[imap] ca_file: {tmp_path / 'elsewhere' / 'ca.pem'} does not exist" in text
    assert f"'elsewhere/ca.pem' is relative to the folder of settings.ini: {tmp_path}" in text
    assert "the local hub writes it when it first starts" in text and "\n" not in text
    own = load_config(write(tmp_path, "[smtp]\nca_file = certs/my-ca.pem\n", "o.ini"))
    with pytest.raises(ConfigError, match=r"my-ca.pem does not exist \('certs/my-ca.pem' is relative to "
                                          r"the folder of o.ini: "):
        edge.endpoint(own, "smtp")


def test_server_texts_never_show_bytes_reprs_even_inside_a_sentence():
    assert server_text("select failed: b'[NONEXISTENT] Unknown Mailbox: Foo'") == \
        "select failed: [NONEXISTENT] Unknown Mailbox: Foo"
    assert server_text('LOGIN failed: b"[AUTHENTICATIONFAILED] Authentication failed."') == \
        "LOGIN failed: [AUTHENTICATIONFAILED] Authentication failed."
    assert server_text("Bob's b'day' doc'") == "Bob's day doc'"


# -- waiting ----------------------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_shows_the_time_and_then_the_hint():
    stream = io.StringIO()
    progress = Progress(stream)
    progress.start("server@hub.test", 120)
    for tenth in range(0, 460, 5):
        progress.tick(tenth / 10)
    progress.done()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "waiting for the answer from server@hub.test (up to 120 s) ..."
    assert lines[1] == "still waiting for the answer: 15 s"
    assert lines[2].startswith(f"no answer after {HINT_AFTER_S:.0f} s: the server (server@hub.test) "
                               "may not be running")
    assert "client.py --collect" in lines[2] and "answer will still come" in lines[2]
    assert lines[3:] == ["still waiting for the answer: 30 s", "still waiting for the answer: 45 s"]


def test_progress_on_a_terminal_counts_seconds_and_hints_once():
    stream = Terminal()
    progress = Progress(stream)
    progress.start("server@hub.test", 120)
    progress.tick(12.3)
    assert stream.getvalue().endswith("waiting for the answer ...  12.3 s")
    progress.tick(29.9)
    assert "may not be running" not in stream.getvalue()
    progress.tick(30.0)
    progress.tick(31.0)
    assert stream.getvalue().count("may not be running") == 1
    assert stream.getvalue().endswith("waiting for the answer ...  31.0 s")


def test_pending_requests_are_per_account_and_survive_damage(tmp_path):
    path = tmp_path / "state.json"
    mine, other = PendingRecord(path, "Client1@hub.test"), PendingRecord(path, "client2@hub.test")
    mine.add("<a@hub.test>", ["tiger.png"])
    other.add("<b@hub.test>", ["dog.png"])
    mine.add("<c@hub.test>", ["IMG_1.HEIC", "IMG_2.HEIC"])
    assert [entry.message_id for entry in mine.waiting()] == ["<a@hub.test>", "<c@hub.test>"]
    assert mine.waiting()[1].files == ["IMG_1.HEIC", "IMG_2.HEIC"]
    mine.remove(["<a@hub.test>", "<b@hub.test>"])  # only ever its own, by id
    assert [entry.message_id for entry in mine.waiting()] == ["<c@hub.test>"]
    assert [entry.message_id for entry in other.waiting()] == ["<b@hub.test>"]
    assert path.stat().st_mode & 0o777 == 0o600

    data = json.loads(path.read_text())
    data["requests"][0]["sent"] = time.time() - MAX_AGE_S - 60  # a month old: forgotten
    path.write_text(json.dumps(data))
    assert other.waiting() == [] and len(mine.waiting()) == 1
    path.write_text("{ not json")
    assert mine.waiting() == []  # a damaged record costs late answers, nothing else
    mine.add("<d@hub.test>", ["x.jpg"])
    assert [entry.message_id for entry in mine.waiting()] == ["<d@hub.test>"]

"""End to end: client -> real mail hub -> server with the real classifier -> client.

Nothing is mocked: the hub is Dovecot plus the SMTP front (the mailhub fixture in tests/conftest.py),
the server is animalid.service.Server running in a thread with the session's
classifier (or server.py as a process for --once), and the client is the
Requester or client.py as a process. Each test gets its own config file and
server state file; every mailbox is emptied before each test. The helpers
live in animalid/testing/harness.py, shared with the robustness tests
and the benchmarks.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.mail.messages import build_request, parse_bytes
from animalid.server.ledger import ANSWERED, IGNORED, REFUSED, SET_ASIDE
from animalid.server.ledger import SqliteLedger as Ledger
from animalid.testing.harness import (  # noqa: F401
    CLIENTS,
    PHOTOS,
    assert_answers,
    drop_connections,
    ledger_state,
    mailbox_messages,
    make_config,
    photo,
    run_cli,
    running_server,
    send_from_outside,
    send_raw,
    wait_for,
)

# -- round trips --------------------------------------------------------------

def test_round_trip_over_pop3_polling(configs, classifier):
    config = configs(receive="pop3", server_receive="pop3")
    with running_server(config, classifier):
        with edge.requester(load_config(config)) as requester:
            started = time.monotonic()
            message_id = requester.send([("tiger.png", photo("tiger.png")),
                                         ("dog.png", photo("dog.png"))])
            answers = requester.wait([message_id], timeout=30)[message_id]
            elapsed = time.monotonic() - started
    assert_answers(answers, ["tiger.png", "dog.png"])
    assert elapsed < 10
    assert ledger_state(config, message_id) == ANSWERED
    assert mailbox_messages(config, "server") == []  # the request was deleted
    assert mailbox_messages(config, "client") == []  # the reply was consumed


def test_round_trip_over_imap_idle(configs, classifier):
    config = configs(receive="imap", server_receive="imap")
    with running_server(config, classifier):
        with edge.requester(load_config(config)) as requester:
            for name in ("bison.png", "tiger.png"):
                message_id = requester.send([(name, photo(name))])
                assert_answers(requester.wait([message_id], timeout=30)[message_id], [name])
    assert mailbox_messages(config, "server") == []
    assert mailbox_messages(config, "client") == []


def test_reply_is_threaded_and_marked_automatic(configs, classifier):
    config = configs(receive="imap", server_receive="imap")
    with running_server(config, classifier) as server:
        with edge.requester(load_config(config)) as requester:
            message_id = requester.send([("tiger.png", photo("tiger.png"))])
            wait_for(lambda: ledger_state(config, message_id) == ANSWERED, what="the answer")
    (raw,) = wait_for(lambda: mailbox_messages(config, "client"), what="the reply")
    reply = parse_bytes(raw)
    assert reply["In-Reply-To"] == message_id and message_id in reply["References"]
    assert reply["Auto-Submitted"] == "auto-replied" and reply["Subject"].startswith("Re: Animal photo")
    assert server.handled == 1


def test_several_clients_at_once_each_get_their_own_answers(configs, classifier):
    server_config = configs(receive="imap", server_receive="imap")
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def client_session(client: str, receive: str):
        try:
            with edge.requester(load_config(configs(client, receive=receive))) as requester:
                sent = {}
                for index, name in enumerate(("tiger.png", "dog.png", "bison.png")):
                    label = f"{client}-{index}-{name}"  # unique per request: shows any mix-up
                    sent[requester.send([(label, photo(name))])] = label
                answers = requester.wait(list(sent), timeout=60)
                results[client] = {sent[mid]: answer for mid, answer in answers.items()}
        except BaseException as exc:
            errors.append(exc)

    with running_server(server_config, classifier):
        threads = [threading.Thread(target=client_session, args=(client, receive))
                   for client, receive in zip(CLIENTS, ("imap", "pop3", "imap", "pop3"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    assert not errors, errors
    assert sorted(results) == list(CLIENTS)
    for by_label in results.values():
        assert len(by_label) == 3
        for label, answers in by_label.items():
            assert_answers(answers, [label])


def test_bad_image_is_answered_with_an_error_not_a_crash(configs, classifier):
    config = configs()
    with running_server(config, classifier):
        with edge.requester(load_config(config)) as requester:
            broken = photo("dog.png")[:200]  # a truncated PNG
            message_id = requester.send([("broken.png", broken), ("tiger.png", photo("tiger.png"))])
            answers = requester.wait([message_id], timeout=30)[message_id]
    assert answers[0]["file"] == "broken.png" and answers[0]["error"]
    assert_answers(answers[1:], ["tiger.png"])


# -- who gets no answer -------------------------------------------------------

def test_strangers_automatic_mail_and_duplicates_get_no_reply(mailhub, configs, classifier):
    config = configs(allowed_senders="client1@hub.test")
    stranger_config = configs("client2")
    image = [("tiger.png", photo("tiger.png"))]
    stranger = build_request("client2@hub.test", mailhub.server, image)
    outsider = build_request("someone@elsewhere.example", mailhub.server, image)
    automatic = build_request("client1@hub.test", mailhub.server, image)
    automatic["Auto-Submitted"] = "auto-replied"
    duplicate = build_request("client1@hub.test", mailhub.server, image)
    with running_server(config, classifier):
        send_raw(mailhub, config, stranger, "client2@hub.test")
        send_from_outside(mailhub, outsider)
        send_raw(mailhub, config, automatic, "client1@hub.test")
        send_raw(mailhub, config, duplicate, "client1@hub.test")
        wait_for(lambda: ledger_state(config, duplicate["Message-ID"]) == ANSWERED, what="answer")
        send_raw(mailhub, config, duplicate, "client1@hub.test")  # same Message-ID again
        for message, state in ((stranger, REFUSED), (outsider, REFUSED), (automatic, IGNORED)):
            wait_for(lambda m=message, s=state: ledger_state(config, m["Message-ID"]) == s,
                     what=f"{message['From']} {state}")
        wait_for(lambda: len(mailbox_messages(config, "server")) == 3,
                 what="the duplicate removed, the ignored mail left alone")
    replies = mailbox_messages(config, "client")
    assert len(replies) == 1  # one answer for the duplicate pair, none for the automatic mail
    assert parse_bytes(replies[0])["In-Reply-To"] == duplicate["Message-ID"]
    assert mailbox_messages(stranger_config, "client") == []


def test_rate_limit_refuses_with_one_notice(configs, classifier):
    config = configs(rate_limit_per_hour=1)
    with running_server(config, classifier):
        with edge.requester(load_config(config)) as requester:
            first = requester.send([("tiger.png", photo("tiger.png"))])
            assert_answers(requester.wait([first], timeout=30)[first], ["tiger.png"])
            second = requester.send([("dog.png", photo("dog.png"))])
            answers = requester.wait([second], timeout=30)[second]
    assert "rate limit" in answers[0]["error"] or "requests in the last hour" in answers[0]["error"]


# -- crash safety -------------------------------------------------------------

def test_answered_but_not_deleted_request_is_removed_without_a_second_reply(configs, classifier):
    config = configs()
    with edge.requester(load_config(config)) as requester:
        message_id = requester.send([("tiger.png", photo("tiger.png"))])
    # As if the server crashed between RECORD and DELETE: the ledger says answered.
    with edge.mailbox(load_config(config), "server", "pop3") as box:
        (ref,) = wait_for(box.list_messages, what="the request")
        box.end_pass()
    state_file = load_config(config).section("server").get_path("state_file")
    with Ledger(state_file) as ledger:
        ledger.mark_answered(ref.key, message_id, "client1@hub.test")
    with running_server(config, classifier):
        wait_for(lambda: mailbox_messages(config, "server") == [], what="the request removed")
    assert mailbox_messages(config, "client") == []


def test_request_failing_too_often_is_set_aside_and_its_sender_told(configs, classifier):
    config = configs(receive="imap", server_receive="imap", max_attempts=2)
    with edge.requester(load_config(config)) as requester:
        message_id = requester.send([("tiger.png", photo("tiger.png"))])
        with edge.mailbox(load_config(config), "server", "imap") as box:
            (ref,) = wait_for(box.list_messages, what="the request")
        state_file = load_config(config).section("server").get_path("state_file")
        with Ledger(state_file) as ledger:  # as if two earlier tries had crashed the server
            ledger.begin_attempts([ref.key, ref.key])
        with running_server(config, classifier):
            answers = requester.wait([message_id], timeout=30)[message_id]
    assert "set aside" in answers[0]["error"]
    assert ledger_state(config, message_id) == SET_ASIDE
    assert mailbox_messages(config, "server") == []  # moved to the Failed folder
    with edge.mailbox(load_config(config), "server", "imap") as box:
        box.folder = "Failed"
        assert len(box.list_messages()) == 1


def test_server_reconnects_after_the_mail_servers_restart(mailhub, configs, classifier):
    config = configs(receive="imap", server_receive="imap")
    with running_server(config, classifier) as server:
        with edge.requester(load_config(config)) as requester:
            first = requester.send([("tiger.png", photo("tiger.png"))])
            assert_answers(requester.wait([first], timeout=30)[first], ["tiger.png"])
            # Cut every IMAP connection (the server's IDLE and the client's) and
            # the server's pooled SMTP session, as a network drop would.
            assert drop_connections(mailhub.ports["imaps"]) >= 2
            mailhub.restart_smtp()
            second = requester.send([("dog.png", photo("dog.png"))])
            assert_answers(requester.wait([second], timeout=30)[second], ["dog.png"])
        assert server.handled == 2


def test_only_one_server_per_mailbox(configs, classifier):
    config = configs()
    with running_server(config, classifier):
        with pytest.raises(Exception, match="already watching this mailbox"):
            edge.server(load_config(config), classifier=classifier).open()


# -- the programs -------------------------------------------------------------

def test_server_once_answers_what_is_waiting_and_exits(configs):
    config = configs()
    with edge.requester(load_config(config)) as requester:
        message_id = requester.send([("bison.png", photo("bison.png"))])
        result = run_cli("server.py", "--once", "--config", str(config), timeout=300)
        assert result.returncode == 0, result.stderr
        assert "answered" in result.stderr and "Traceback" not in result.stderr
        answers = requester.wait([message_id], timeout=10)[message_id]
    assert_answers(answers, ["bison.png"])


def test_client_cli_prints_the_answer(configs, classifier):
    config = configs()
    with running_server(config, classifier):
        result = run_cli("client.py", "--image", str(PHOTOS / "tiger.png"), "--config", str(config),
                         "--timeout", "30")
        as_json = run_cli("client.py", "--image", str(PHOTOS / "dog.png"), "--config", str(config),
                          "--json", "--receive", "imap", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "tiger.png:" in result.stdout and "Felidae" in result.stdout
    assert "waiting for the answer" in result.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert_answers(json.loads(as_json.stdout), ["dog.png"])


def test_client_cli_times_out_with_status_3(configs):
    config = configs()  # no server running
    result = run_cli("client.py", "--image", str(PHOTOS / "tiger.png"), "--config", str(config),
                     "--timeout", "1.5")
    assert result.returncode == 3, result.stderr
    assert "no answer" in result.stderr and "Traceback" not in result.stderr


def test_unreadable_image_file_is_a_clear_error(configs, tmp_path):
    config = configs()
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    missing = run_cli("client.py", "--image", str(tmp_path / "nope.jpg"), "--config", str(config))
    wrong = run_cli("client.py", "--image", str(not_image), "--config", str(config))
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert wrong.returncode == 1 and "notes.txt is a text file; send the photo itself" in wrong.stderr


def test_client_starts_without_heavy_imports():
    result = run_cli("-c", "import sys, animalid.cli.client as client; client.build_parser(); "
                           "print(sorted({'torch', 'cv2', 'numpy', 'PIL'} & set(sys.modules)))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Last: failed logins make Dovecot slow down later logins from this address.
def test_wrong_password_gives_status_4(mailhub, configs, tmp_path):
    config = make_config(mailhub, tmp_path, client_password="wrong-password")
    client = run_cli("client.py", "--image", str(PHOTOS / "tiger.png"), "--config", str(config),
                     "--timeout", "5")
    assert client.returncode == 4, client.stderr
    assert "refused the login" in client.stderr and "wrong-password" not in client.stderr
    assert "b'" not in client.stderr and 'b"' not in client.stderr  # the server's text, decoded
    # Which account, and which setting gave the password (never the command: it may hold one).
    assert "refused the login of client1@hub.test" in client.stderr
    assert client.stderr.strip().endswith(f"; the password came from {config}: [client] password_command")

    text = config.read_text().replace(f"cat {Path(mailhub.state) / 'secrets' / 'server'}",
                                      "echo wrong-server-password")
    config.write_text(text)
    started = time.monotonic()
    server = run_cli("server.py", "--once", "--config", str(config), timeout=60)
    assert server.returncode == 4, server.stderr
    assert "refused the login of server@hub.test" in server.stderr and "Traceback" not in server.stderr
    assert f"the password came from {config}: [server] password_command" in server.stderr
    assert "b'" not in server.stderr and 'b"' not in server.stderr
    # It logs in before it loads the model (5-15 s here), and imapclient's INFO lines stay quiet.
    assert "classifier loaded" not in server.stderr and "Connection closed" not in server.stderr
    assert time.monotonic() - started < 20


def test_unreachable_mail_server_gives_status_5(mailhub, tmp_path):
    config = make_config(mailhub, tmp_path)
    text = config.read_text().replace(f"port = {mailhub.ports['submission']}", "port = 9")
    config.write_text(text)
    result = run_cli("client.py", "--image", str(PHOTOS / "tiger.png"), "--config", str(config),
                     "--timeout", "5")
    assert result.returncode == 5, result.stderr
    assert "connection refused" in result.stderr

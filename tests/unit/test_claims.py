"""Pieces of the claim protocol that need no mail server: COPYUID parsing, the lock, settings."""

from __future__ import annotations

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.errors import ConfigError, PermanentError, TransientError
from animalid.mail.imap import parse_copyuid
from animalid.server.claims import new_worker_id
from animalid.server.service import POP3_ALONE, MailboxLock


@pytest.mark.parametrize("answer, expected", [
    (b"1795853192 1:2 1:2", {1: 1, 2: 2}),
    (b"38505 304,319:320 3956:3958", {304: 3956, 319: 3957, 320: 3958}),  # RFC 4315's example
    (b"7 5 11", {5: 11}),
    ("7 9:8 20:21", {8: 20, 9: 21}),  # a range may be written high:low
])
def test_copyuid_maps_source_uids_to_destination_uids(answer, expected):
    assert parse_copyuid(answer) == expected


@pytest.mark.parametrize("answer", [b"7 1:3 10:11", b"7 a 1", b"7"])
def test_a_malformed_copyuid_is_a_transient_error_not_a_guess(answer):
    with pytest.raises(TransientError, match="COPYUID"):
        parse_copyuid(answer)


def test_worker_ids_are_new_at_every_start():
    first, second = new_worker_id(), new_worker_id()
    assert first != second and first.count(":") == 2


def test_imap_servers_share_the_lock_and_a_pop3_server_is_told_why_it_cannot_join(tmp_path):
    state = tmp_path / "state.sqlite"
    imap_one, imap_two, pop3 = MailboxLock(state), MailboxLock(state), MailboxLock(state)
    imap_one.acquire(shared=True)
    imap_two.acquire(shared=True)
    with pytest.raises(PermanentError) as error:
        pop3.acquire(why=POP3_ALONE)
    text = str(error.value)
    assert "already watching this mailbox" in text and "POP3 cannot claim a message atomically" in text
    assert "\n" not in text
    imap_one.release()
    imap_two.release()
    pop3.acquire(why=POP3_ALONE)
    with pytest.raises(PermanentError, match=r"cannot share this mailbox \(pid \d+, receive = pop3\)"):
        MailboxLock(state).acquire(shared=True)
    with pytest.raises(PermanentError, match=r"another server \(pid \d+\) is already watching"):
        MailboxLock(state).acquire(why=POP3_ALONE)
    pop3.release()


@pytest.mark.parametrize("setting, problem", [
    ("claims_folder = INBOX", "'INBOX' is also [imap] folder"),
    ("claims_folder = Failed", "'Failed' is also [server] failed_folder"),
    ("claim_lease = 0.5", "below the minimum"),
])
def test_bad_claim_settings_are_one_clear_line(tmp_path, setting, problem):
    config = tmp_path / "config.ini"
    config.write_text(f"[server]\nallowed_senders = a@b.c\npassword_env =\npassword_command = echo x\n{setting}\n")
    with pytest.raises(ConfigError) as error:
        edge.server_settings(load_config(config))
    assert problem in str(error.value) and "\n" not in str(error.value)

"""imapclient's private internals that animalid/mail/imapclient_compat.py relies on are still there."""

from __future__ import annotations

import imaplib
import importlib.metadata

import pytest
from imapclient import IMAPClient

from animalid.mail import imapclient_compat

pytestmark = pytest.mark.unit


def test_the_installed_imapclient_is_the_one_the_internals_were_checked_against():
    assert importlib.metadata.version("imapclient") == imapclient_compat.IMAPCLIENT_VERSION


def test_the_private_attributes_exist():
    # No server needed: the attributes are those of the classes.
    assert callable(getattr(IMAPClient, "_set_read_timeout", None))
    assert "untagged_responses" in imaplib.IMAP4.__init__.__code__.co_names
    assert "file" in imaplib.IMAP4._create_socket.__code__.co_names \
        or "file" in imaplib.IMAP4.open.__code__.co_names


def test_untagged_responses_reads_imaplibs_store():
    class Imap:
        untagged_responses = {"EXISTS": [b"3"]}

    class Client:
        _imap = Imap()

    store = imapclient_compat.untagged_responses(Client())
    assert store is Imap.untagged_responses
    store.pop("EXISTS")
    assert Imap.untagged_responses == {}

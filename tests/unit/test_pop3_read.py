"""The POP3 message reader's framing and byte cap (RFC 1939 section 3), on byte streams.

End to end, against Dovecot: tests/e2e/test_hardening.py.
"""

from __future__ import annotations

import io
import poplib

import pytest

from animalid.mail.pop3_read import CHUNK, OverCap, read_body


def stream(*lines: bytes) -> io.BytesIO:
    return io.BytesIO(b"".join(lines))


def test_dot_stuffing_is_undone_and_the_end_marker_dropped():
    body = read_body(stream(b"Subject: x\r\n", b"\r\n", b"..leading dot\r\n", b".\r\n", b"+OK next"), 1000)
    assert body == b"Subject: x\r\n\r\n.leading dot\r\n"


def test_a_line_far_longer_than_poplibs_limit_is_read_whole():
    long_line = b"x" * (5 * CHUNK + 17) + b"\r\n"
    assert poplib._MAXLINE == 2048  # nothing here changed poplib's module state
    assert read_body(stream(b"a\r\n", long_line, b"b\r\n", b".\r\n"), 10_000_000) == b"a\r\n" + long_line + b"b\r\n"


def test_a_dot_at_a_chunk_boundary_inside_a_long_line_is_not_the_end():
    line = b"y" * (CHUNK - 1) + b".\r\n"  # the "." starts the second readline() of this line
    assert read_body(stream(line, b".\r\n"), 10_000_000) == line


def test_over_the_cap_reads_to_the_end_and_reports_the_size():
    data = stream(b"z" * 3000 + b"\r\n", b"more\r\n", b".\r\n", b"+OK after")
    result = read_body(data, 1000)
    assert result == OverCap(3002 + 6)
    assert data.read() == b"+OK after"  # the session can go on


def test_the_head_is_kept_for_top():
    assert read_body(stream(b"abcdef\r\n", b"ghij\r\n", b".\r\n"), 5, keep_head=True) == b"abcde"


@pytest.mark.parametrize("data", [b"", b"no end marker\r\n", b"line\r\n..\r\n"])
def test_a_connection_closed_midway_is_the_servers_failure(data):
    with pytest.raises(poplib.error_proto, match="EOF"):
        read_body(io.BytesIO(data), 1000)

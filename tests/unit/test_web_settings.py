"""[web] read at the edge (animalid/cli/settings.py web_settings): defaults, token rule, errors."""

from __future__ import annotations

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.errors import ConfigError


def config(tmp_path, web: str = ""):
    path = tmp_path / "settings.ini"
    path.write_text(f"[server]\nstate_file = state/ledger.sqlite\n[web]\n{web}\n")
    return load_config(path)


def test_defaults_serve_loopback_with_thumbnails_beside_the_state_file(tmp_path):
    web = edge.web_settings(config(tmp_path))
    assert web.enabled and web.address == ("127.0.0.1", 8470) and web.token == ""
    assert web.keep_days == 7 and web.thumbnails == tmp_path / "state" / "thumbnails"


def test_an_empty_listen_turns_the_page_off(tmp_path):
    assert not edge.web_settings(config(tmp_path, "listen =")).enabled


def test_listening_beyond_loopback_needs_a_token(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"\[web\] listen: .*token_env or token_command"):
        edge.web_settings(config(tmp_path, "listen = 0.0.0.0:8470"))
    monkeypatch.setenv("OPS_TOKEN", "short")
    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        edge.web_settings(config(tmp_path, "listen = 0.0.0.0:8470\ntoken_env = OPS_TOKEN"))
    monkeypatch.setenv("OPS_TOKEN", "a-long-enough-token-1234")
    web = edge.web_settings(config(tmp_path, "listen = 0.0.0.0:8470\ntoken_env = OPS_TOKEN"))
    assert web.token == "a-long-enough-token-1234" and "1234" not in repr(web)


@pytest.mark.parametrize("line, words", [("listen = 8470", "is not host:port"),
                                         ("keep_days = -1", "keep_days"),
                                         ("listen = localhost:99999", "is not host:port")])
def test_bad_values_name_the_key(tmp_path, line, words):
    with pytest.raises(ConfigError, match=words):
        edge.web_settings(config(tmp_path, line))

"""config.ini reading: typed values, secrets from env or command, errors that name the place."""

from __future__ import annotations

import pytest

from animalid.config import load_config
from animalid.errors import ConfigError
from animalid.testing.harness import ROOT


def write(tmp_path, text: str):
    path = tmp_path / "settings.ini"
    path.write_text(text)
    return path


def test_the_shipped_config_reads(tmp_path):
    config = load_config(ROOT / "config.ini")
    for section in ("client", "server", "smtp", "imap", "pop3", "classifier", "camera", "hub"):
        assert config.has_section(section)
    assert config.section("hub").get_int("port_offset") == 1000
    assert config.section("smtp").get("port", None) is None  # follows the hub (transport.py)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.ini")
    assert str(caught.value) == f"{tmp_path / 'absent.ini'}: no such file"


def test_broken_ini_is_named(tmp_path):
    with pytest.raises(ConfigError, match="settings.ini: not a valid INI"):
        load_config(write(tmp_path, "no section header here\n"))


def test_missing_key_names_file_section_and_key(tmp_path):
    # A key left out takes the default; one written empty has no value at all.
    section = load_config(write(tmp_path, "[smtp]\nport = 25\nhost =\n")).section("smtp")
    with pytest.raises(ConfigError, match=r"settings.ini: \[smtp\] host: missing"):
        section.get("host")


def test_missing_section_is_named(tmp_path):
    # Known sections fall back to the defaults table; an unknown one is named.
    with pytest.raises(ConfigError, match=r"section \[imapx\] is missing"):
        load_config(write(tmp_path, "[smtp]\n")).section("imapx")


@pytest.mark.parametrize("name, text, getter, message", [
    ("smtp", "port = abc", lambda s: s.get_int("port"), "'abc' is not a whole number"),
    ("smtp", "port = 70000", lambda s: s.get_int("port", maximum=65535), "above the maximum"),
    ("security", "notify_signature_failures = maybe", lambda s: s.get_bool("notify_signature_failures"),
     "'maybe' is not yes/no"),
    ("smtp", "security = ssl3", lambda s: s.get_choice("security", ("tls", "starttls")),
     "not one of: tls, starttls"),
])
def test_invalid_values_are_explained(tmp_path, name, text, getter, message):
    section = load_config(write(tmp_path, f"[{name}]\n{text}\n")).section(name)
    with pytest.raises(ConfigError, match=message):
        getter(section)


def test_inline_comments_and_relative_paths(tmp_path):
    section = load_config(write(tmp_path, "[smtp]\nca_file = certs/ca.pem ; the hub's CA\n")).section("smtp")
    assert section.get_path("ca_file") == tmp_path / "certs" / "ca.pem"


def test_secret_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_SECRET", "from-env")
    section = load_config(write(tmp_path, "[client]\npassword_env = TEST_SECRET\n"
                                          "password_command = echo from-command\n")).section("client")
    assert section.get_secret("password") == "from-env"


def test_secret_from_command_runs_in_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_SECRET", raising=False)
    (tmp_path / "secret.txt").write_text("s3cret\n")
    section = load_config(write(tmp_path, "[client]\npassword_env = TEST_SECRET\n"
                                          "password_command = cat secret.txt\n")).section("client")
    assert section.get_secret("password") == "s3cret"


def test_failing_secret_command_is_named_without_the_secret(tmp_path):
    section = load_config(write(tmp_path, "[client]\npassword_command = cat missing.txt\n")).section("client")
    with pytest.raises(ConfigError, match=r"\[client\] password_command: command exited 1"):
        section.get_secret("password")


def test_unset_variable_without_command_is_explained(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    section = load_config(write(tmp_path, "[client]\npassword_env = NOPE_NOT_SET\n")).section("client")
    with pytest.raises(ConfigError, match="environment variable NOPE_NOT_SET is not set"):
        section.get_secret("password")


def test_empty_secret_variable_is_an_error_that_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPTY_SECRET", "")
    section = load_config(write(tmp_path, "[client]\npassword_env = EMPTY_SECRET\n"
                                          "password_command = echo from-command\n")).section("client")
    with pytest.raises(ConfigError, match=r"\[client\] password_env: environment variable EMPTY_SECRET "
                                          r"is set but empty"):
        section.get_secret("password")


def test_shipped_config_equals_the_defaults_table():
    """Every key of config.ini is known, and its value is the table's: the two never drift."""
    from animalid.config import DEFAULTS

    config = load_config(ROOT / "config.ini")
    assert set(config.parser.sections()) == set(DEFAULTS)
    for name in config.parser.sections():
        for key in config.parser.options(name):
            assert key in DEFAULTS[name], f"[{name}] {key} is not in DEFAULTS"
            assert config.parser.get(name, key).strip() == DEFAULTS[name][key], f"[{name}] {key}"


def test_a_key_left_out_takes_the_default(tmp_path):
    section = load_config(write(tmp_path, "[server]\n")).section("server")
    assert section.get_float("poll_interval") == 0.1
    assert load_config(write(tmp_path, "[client]\n")).section("client").get_float("poll_interval") == 1.0
    assert load_config(write(tmp_path, "[smtp]\n")).section("classifier").get_float("animal_threshold") == 0.20


def test_unknown_key_is_named_with_the_nearest_known_one(tmp_path):
    with pytest.raises(ConfigError, match=r"\[server\] pol_interval: unknown setting "
                                          r"\(did you mean poll_interval\?\)"):
        load_config(write(tmp_path, "[server]\npol_interval = 1\n"))


def test_naming_one_secret_source_drops_the_other_default(tmp_path, monkeypatch):
    # [client] password_command defaults to the hub's file; naming only the
    # variable must not fall back to that command silently.
    monkeypatch.delenv("MY_APP_PASSWORD", raising=False)
    section = load_config(write(tmp_path, "[client]\npassword_env = MY_APP_PASSWORD\n")).section("client")
    with pytest.raises(ConfigError, match="environment variable MY_APP_PASSWORD is not set"):
        section.get_secret("password")


def test_the_source_of_a_secret_is_named_without_the_secret(tmp_path, monkeypatch):
    path = tmp_path / "c.ini"
    path.write_text("[client]\npassword_env = MY_MAIL_PASSWORD\npassword_command = echo hunter2\n")
    source = load_config(path).section("client").secret_source("password")
    monkeypatch.setenv("MY_MAIL_PASSWORD", "s3cret")
    assert source.described() == f"the environment variable MY_MAIL_PASSWORD ({path.resolve()}: [client] password_env)"
    monkeypatch.delenv("MY_MAIL_PASSWORD")
    assert source.described() == f"{path.resolve()}: [client] password_command"
    assert "hunter2" not in source.described()

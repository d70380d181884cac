"""Reading ``config.ini``: typed settings with errors that name file, section and key.

``DEFAULTS`` below is the one table of default values: a key left out of the
file takes its value from there, and nowhere else in the code holds a default
for a setting. ``config.ini`` as shipped repeats the table exactly (a test
keeps the two equal), so deleting a line from it changes nothing. A key the
table does not know is an error that suggests the nearest known one, so a
typo is never silently ignored.

The file is plain configparser INI and holds no secrets. A secret (password or
OAuth2 token) is named by ``<name>_env`` (an environment variable) or
``<name>_command`` (a command whose standard output is the secret; it runs
without a shell, in the config file's folder). Relative paths in the file are
relative to the file's folder, so the programs behave the same from any
working directory; an error about a path names the path it resolved to and
the folder it is relative to.

A value may name another setting as ``${section:key}`` (configparser's
ExtendedInterpolation spelling): the shipped file writes the local hub's
folder once, in ``[hub] state_dir``, and the CA file, the password commands
and the server's state file say ``${hub:state_dir}/...``, so moving the hub
is one edit. A port left empty follows the host (transport.py): the
protocol's standard port, plus ``[hub] port_offset`` when the host is the
local hub.
"""

from __future__ import annotations

import configparser
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .credentials import SecretSource
from .errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.ini"
# The one table of defaults: config.ini as shipped holds exactly these values.
# Secrets never have a default here, only where they come from.
DEFAULTS: dict[str, dict[str, str]] = {
    "hub": {
        "state_dir": ".mailhub",
        "listen": "127.0.0.1",
        "domain": "hub.test",
        "port_offset": "1000",
        "clients": "client1, client2",
    },
    "smtp": {
        # localhost, not 127.0.0.1: clients that check only DNS names in the
        # certificate (fetchmail) accept the hub's certificate for it.
        "host": "localhost",
        "port": "",  # empty: the standard port, plus [hub] port_offset for the hub
        "security": "starttls",
        "ca_file": "${hub:state_dir}/ca.pem",
        "timeout": "30",
    },
    "imap": {
        "host": "localhost",
        "port": "",
        "security": "tls",
        "ca_file": "${hub:state_dir}/ca.pem",
        "timeout": "30",
        "folder": "INBOX",
        "idle_refresh": "1500",
    },
    "pop3": {
        "host": "localhost",
        "port": "",
        "security": "tls",
        "ca_file": "${hub:state_dir}/ca.pem",
        "timeout": "30",
    },
    "client": {
        "address": "client1@hub.test",
        "username": "",  # empty: the same as address
        "auth": "password",
        "password_env": "ANIMALID_CLIENT_PASSWORD",
        "password_command": "cat ${hub:state_dir}/secrets/client1",
        "token_env": "",
        "token_command": "",
        "server_address": "server@hub.test",
        "receive": "imap",
        "poll_interval": "1.0",
        "timeout": "120",
        "state_file": ".client-state.json",
    },
    "camera": {
        "source": "0",
        "width": "1280",
        "height": "720",
        "warmup_frames": "10",
        "jpeg_quality": "85",
        "max_side": "1280",
        "save_dir": "",
    },
    "server": {
        "address": "server@hub.test",
        "username": "",  # empty: the same as address
        "auth": "password",
        "password_env": "ANIMALID_SERVER_PASSWORD",
        "password_command": "cat ${hub:state_dir}/secrets/server",
        "token_env": "",
        "token_command": "",
        "receive": "imap",
        "poll_interval": "0.1",
        "allowed_senders": "hub",
        # A request counts only when the provider's Authentication-Results says its From is
        # genuine (mail/authresults.py); authserv_id names that provider's header.
        "require_authentication": "yes",
        "authserv_id": "${hub:domain}",
        "display_name": "Animal ID",
        "state_file": "${hub:state_dir}/server-state.sqlite",
        "max_attempts": "3",
        "pipeline": "yes",
        "failed_folder": "Failed",
        "answered_folder": "",
        "retry_max_delay": "300",
        "max_message_bytes": "25000000",
        "max_parts": "50",
        "max_images": "10",
        "max_image_pixels": "40000000",
        "rate_limit_per_hour": "120",
        # Several servers on one mailbox (animalid/server/claims.py, README "Many servers").
        "ledger": "",  # empty: SQLite at state_file; or postgresql://user@host/database
        "ledger_password_env": "",
        "ledger_password_command": "",
        "claims_folder": "animalid-claims",
        "claim_lease": "60",
    },
    "web": {
        # The operations page, /metrics and the health endpoints (docs/operations.md).
        "listen": "127.0.0.1:8470",  # empty: no page
        "token_env": "",
        "token_command": "",
        "keep_days": "7",
    },
    "security": {
        "signing_key_env": "",
        "signing_key_command": "",
        "encryption_key_env": "",
        "encryption_key_command": "",
        "signature_max_age": "604800",
        "notify_signature_failures": "no",
    },
    "classifier": {
        "model": "models/balanced.json",
        "views": "",
        "knowledge_base": "animal_image.json",
        "device": "auto",
        "backend": "auto",
        "threads": "0",
        "decode_threads": "0",
        "batch_size": "0",
        "precision": "fp32",
        "top_k": "3",
        "allow_pickle": "no",
        "species_threshold": "",
        "genus_threshold": "",
        "family_threshold": "",
        "order_threshold": "",
        "class_threshold": "",
        "phylum_threshold": "",
        "rank_threshold": "0.5",
        "min_confidence": "0.20",
        "animal_threshold": "0.20",
        "animal_candidates": "50",
        "lead_probability": "0.50",
        "lead_ratio": "3",
    },
}

# Sections the file may hold any number of, "[<prefix> NAME]", each with these keys
# and defaults (docs/trail-cameras.md). They are not in config.ini as shipped.
SECTION_TEMPLATES: dict[str, dict[str, str]] = {
    "trail-camera": {
        "from": "",  # the camera's address, or *@vendor.example
        "subject_pattern": "",  # a regular expression; its named group picks the camera's name
        "name": "",  # shown in alerts; empty: the section's NAME
        "notify": "",  # addresses that get alerts and the digest
        "alert_on": "",  # taxa at any rank, e.g. Ursidae, Canis lupus, Felidae
        "min_probability": "0.5",  # overall, and/or per taxon: 0.6, Ursidae=0.4
        "cooldown": "30m",
        "quiet_hours": "",  # e.g. 22:00-06:00
        "digest": "",  # e.g. daily 07:00
        "silent_after": "24h",
    },
}


def template_of(section: str) -> str | None:
    """The SECTION_TEMPLATES prefix of a section name ("trail-camera North ridge"), or None."""
    prefix, space, name = section.partition(" ")
    return prefix if space and name.strip() and prefix in SECTION_TEMPLATES else None


def known_keys(section: str) -> dict[str, str] | None:
    """The keys (with defaults) a section may hold: DEFAULTS, or its template's."""
    if section in DEFAULTS:
        return DEFAULTS[section]
    template = template_of(section)
    return SECTION_TEMPLATES[template] if template else None


_MISSING = object()
# ${section:key}: a reference to another setting's value (one level, no nesting).
_REFERENCE = re.compile(r"\$\{([A-Za-z0-9_]+):([A-Za-z0-9_]+)\}")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def load_config(path: str | os.PathLike | None = None) -> "Config":
    """Read the config file (default: config.ini beside the programs)."""
    given = path is not None and str(path) != ""
    path = Path(path) if path is not None and given else DEFAULT_CONFIG
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        # The name as the user typed it; without --config, where the default was looked for.
        raise ConfigError(f"{path}: no such file" if given else
                          f"{path}: no such file (the default settings file; --config FILE names another)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except configparser.Error as exc:
        message = str(exc).replace("\n", " ")
        raise ConfigError(f"{path}: not a valid INI file: {message}") from None
    config = Config(path.resolve(), parser)
    config.check_known_keys()
    return config


@dataclass
class Config:
    path: Path
    parser: configparser.ConfigParser

    @property
    def folder(self) -> Path:
        return self.path.parent

    def has_section(self, name: str) -> bool:
        """Whether the file itself has the section (defaults aside)."""
        return self.parser.has_section(name)

    def sections_of(self, template: str) -> list[str]:
        """The file's sections "[<template> NAME]", in the file's order."""
        return [name for name in self.parser.sections() if template_of(name) == template]

    def section(self, name: str) -> "Section":
        if name not in DEFAULTS and not self.parser.has_section(name):
            raise ConfigError(f"{self.path}: section [{name}] is missing")
        return Section(self, name)

    def check_known_keys(self) -> None:
        """A ConfigError for the first section or key the defaults table does not know."""
        for name in self.parser.sections():
            known = known_keys(name)
            if known is None:
                hint = _nearest(name, [*DEFAULTS, *(f"{t} NAME" for t in SECTION_TEMPLATES)])
                raise ConfigError(f"{self.path}: unknown section [{name}]{hint}")
            for key in self.parser.options(name):
                if f"{key}_env" in known:  # e.g. "password = hunter2"
                    raise ConfigError(f"{self.path}: [{name}] {key}: secrets never go in this file; "
                                      f"name where it comes from with {key}_env or {key}_command")
                if key not in known:
                    raise ConfigError(f"{self.path}: [{name}] {key}: unknown setting"
                                      f"{_nearest(key, known)}")


def _nearest(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


@dataclass
class Section:
    config: Config
    name: str

    def _where(self, key: str) -> str:
        return f"{self.config.path}: [{self.name}] {key}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._where(key)}: {problem}")

    def value(self, key: str) -> str:
        """The file's value when the key is there (even empty), else the table's default;
        ``${section:key}`` references replaced by those settings' values."""
        return self.expand(key, self.as_written(key))

    def as_written(self, key: str) -> str:
        """The value as written (file or table), references left as they are."""
        if self.config.parser.has_option(self.name, key):
            return self.config.parser.get(self.name, key).strip()
        return (known_keys(self.name) or {}).get(key, "")

    def expand(self, key: str, value: str) -> str:
        """``value`` (of ``key``) with each ``${section:key}`` replaced by that setting's value."""
        if "${" not in value:
            return value

        def replace(match: re.Match) -> str:
            section, name = match.group(1).lower(), match.group(2).lower()
            if name not in DEFAULTS.get(section, {}):
                raise self.error(key, f"${{{match.group(1)}:{match.group(2)}}} names no setting")
            target = Section(self.config, section).as_written(name)
            if "${" in target:
                raise self.error(key, f"[{section}] {name} refers to another setting itself; "
                                      "references are one level deep")
            return target

        return _REFERENCE.sub(replace, value)

    def relative_to(self, raw: str) -> str:
        """How a relative path of this file is read, for error messages ("" for an absolute one)."""
        if not raw or Path(os.path.expanduser(raw)).is_absolute():
            return ""
        return f"{raw!r} is relative to the folder of {self.config.path.name}: {self.config.folder}"

    def has(self, key: str) -> bool:
        return self.value(key) != ""

    def get(self, key: str, fallback=_MISSING) -> str:
        """The value, or ``fallback`` when it is empty; without one, empty is an error."""
        value = self.value(key)
        if value:
            return value
        if fallback is _MISSING:
            raise self.error(key, "missing (add it to the file)")
        return fallback

    def get_int(self, key: str, fallback=_MISSING, minimum: int | None = None,
                maximum: int | None = None) -> int:
        raw = self.get(key, fallback)
        try:
            value = int(str(raw).replace("_", ""))
        except ValueError:
            raise self.error(key, f"{raw!r} is not a whole number") from None
        self._check_range(key, value, minimum, maximum)
        return value

    def get_float(self, key: str, fallback=_MISSING, minimum: float | None = None,
                  maximum: float | None = None) -> float:
        raw = self.get(key, fallback)
        try:
            value = float(raw)
        except ValueError:
            raise self.error(key, f"{raw!r} is not a number") from None
        self._check_range(key, value, minimum, maximum)
        return value

    def _check_range(self, key, value, minimum, maximum) -> None:
        if minimum is not None and value < minimum:
            raise self.error(key, f"{value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"{value} is above the maximum {maximum}")

    def get_bool(self, key: str, fallback=_MISSING) -> bool:
        raw = self.get(key, fallback)
        if isinstance(raw, bool):
            return raw
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise self.error(key, f"{raw!r} is not yes/no")

    def get_choice(self, key: str, choices: Iterable[str], fallback=_MISSING) -> str:
        choices = tuple(choices)
        raw = self.get(key, fallback)
        if raw.lower() not in choices:
            raise self.error(key, f"{raw!r} is not one of: {', '.join(choices)}")
        return raw.lower()

    def get_list(self, key: str, fallback=_MISSING) -> list[str]:
        raw = self.get(key, fallback)
        if isinstance(raw, (list, tuple)):
            return list(raw)
        return [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]

    def get_path(self, key: str, fallback=_MISSING, must_exist: bool = False) -> Path | None:
        raw = self.get(key, fallback)
        if raw is None or raw == "":
            return None
        path = Path(os.path.expanduser(str(raw)))
        if not path.is_absolute():
            path = self.config.folder / path
        if must_exist and not path.exists():
            relative = self.relative_to(str(raw))
            raise self.error(key, f"{path} does not exist" + (f" ({relative})" if relative else ""))
        return path

    def secret_source(self, name: str) -> SecretSource:
        """Where the secret ``name`` comes from: ``<name>_env`` and ``<name>_command``.

        The two keys are one setting: when the file names either, the other
        takes no default. Nothing is fetched here (``SecretSource.fetch``).
        """
        env_key, command_key = f"{name}_env", f"{name}_command"
        parser = self.config.parser
        own = parser.has_option(self.name, env_key) or parser.has_option(self.name, command_key)

        def source(key: str) -> str:
            if own:
                return self.expand(key, parser.get(self.name, key, fallback="").strip())
            return self.value(key)

        return SecretSource(name=name, where=f"{self.config.path}: [{self.name}]",
                            variable=source(env_key), command=source(command_key),
                            folder=self.config.folder)

    def get_secret(self, name: str, required: bool = True) -> str | None:
        """The secret ``name`` now (see ``secret_source``); None when none is named and
        it is not ``required``. The value itself is never logged or put into an error."""
        source = self.secret_source(name)
        if not source.named and not required:
            return None
        return source.fetch()

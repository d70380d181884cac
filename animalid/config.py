"""Reading ``config.ini``: typed settings with errors that name file, section and key.

The file is plain configparser INI and holds no secrets. A secret (password or
OAuth2 token) is named by ``<name>_env`` (an environment variable) or
``<name>_command`` (a command whose standard output is the secret; it runs
without a shell, in the config file's folder). Relative paths in the file are
relative to the file's folder, so the programs behave the same from any
working directory.
"""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.ini"
_MISSING = object()
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}
_SECRET_COMMAND_TIMEOUT_S = 30


def load_config(path: str | os.PathLike | None = None) -> "Config":
    """Read the config file (default: config.ini beside the programs)."""
    path = Path(path) if path else DEFAULT_CONFIG
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config FILE)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except configparser.Error as exc:
        message = str(exc).replace("\n", " ")
        raise ConfigError(f"{path}: not a valid INI file: {message}") from None
    return Config(path.resolve(), parser)


@dataclass
class Config:
    path: Path
    parser: configparser.ConfigParser

    @property
    def folder(self) -> Path:
        return self.path.parent

    def has_section(self, name: str) -> bool:
        return self.parser.has_section(name)

    def section(self, name: str) -> "Section":
        if not self.parser.has_section(name):
            raise ConfigError(f"{self.path}: section [{name}] is missing")
        return Section(self, name)


@dataclass
class Section:
    config: Config
    name: str

    def _where(self, key: str) -> str:
        return f"{self.config.path}: [{self.name}] {key}"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self._where(key)}: {problem}")

    def has(self, key: str) -> bool:
        value = self.config.parser.get(self.name, key, fallback="")
        return value.strip() != ""

    def get(self, key: str, fallback=_MISSING) -> str:
        value = self.config.parser.get(self.name, key, fallback="").strip()
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
            raise self.error(key, f"{path} does not exist")
        return path

    def get_secret(self, name: str, required: bool = True) -> str | None:
        """The secret ``name`` from ``<name>_env`` or ``<name>_command``.

        The environment variable wins, so a deployment can override the
        command without editing the file. The value itself is never logged or
        put into an error message.
        """
        env_key, command_key = f"{name}_env", f"{name}_command"
        variable = self.get(env_key, "")
        if variable and os.environ.get(variable):
            return os.environ[variable]
        command = self.get(command_key, "")
        if command:
            return self._run_secret_command(command_key, command)
        if not required:
            return None
        if variable:
            raise self.error(env_key, f"environment variable {variable} is not set "
                                      f"and no {command_key} is given")
        raise self.error(f"{env_key} / {command_key}", "missing: say where the secret comes from")

    def _run_secret_command(self, key: str, command: str) -> str:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise self.error(key, f"cannot parse the command: {exc}") from None
        try:
            result = subprocess.run(argv, cwd=self.config.folder, capture_output=True, text=True,
                                    timeout=_SECRET_COMMAND_TIMEOUT_S, check=False)
        except FileNotFoundError:
            raise self.error(key, f"command not found: {argv[0]}") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.error(key, f"command failed: {type(exc).__name__}") from None
        secret = result.stdout.strip()
        if result.returncode != 0 or not secret:
            detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise self.error(key, f"command exited {result.returncode}: {detail[0]}")
        return secret

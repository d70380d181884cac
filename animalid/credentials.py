"""Where a secret comes from, fetched only when needed and never shown.

A ``SecretSource`` names an environment variable and/or a command (run
without a shell, in a given folder, its standard output the secret). It is
built once where the settings are read (``animalid.config``) and handed to
the code that logs in, which calls ``fetch()`` at the moment it needs the
secret: an OAuth2 token is fetched afresh for every login, since access
tokens expire. The secret itself is never kept here, never in ``repr``, logs
or error messages: errors name the setting and the variable or command.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from animalid.errors import ConfigError

SECRET_COMMAND_TIMEOUT_S = 30


@dataclass(frozen=True)
class SecretSource:
    """``<name>_env`` / ``<name>_command`` of one config section, resolved to values.

    The environment variable wins, so a deployment can override the command
    without editing the file. A variable that is set but empty is an error
    that names it (an empty password is never what was meant).
    """

    name: str  # "password", "token", "signing_key", ...
    where: str  # for errors: "<config file>: [section]"
    variable: str = ""
    command: str = ""
    folder: Path = Path(".")  # the command runs here (the config file's folder)

    @property
    def named(self) -> bool:
        """Whether any source is given at all."""
        return bool(self.variable or self.command)

    def described(self) -> str:
        """Where the secret comes from now, in words for an error, without the secret or the
        command itself (a command may hold one: ``echo hunter2``)."""
        if self.variable and self.variable in os.environ:
            return f"the environment variable {self.variable} ({self.where} {self.name}_env)"
        if self.command:
            return f"{self.where} {self.name}_command"
        return f"{self.where} {self.name}_env / {self.name}_command"

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.where} {key}: {problem}")

    def fetch(self) -> str:
        """The secret now; a ConfigError naming the setting when it cannot be had."""
        env_key, command_key = f"{self.name}_env", f"{self.name}_command"
        if self.variable and self.variable in os.environ:
            if not os.environ[self.variable].strip():
                raise self.error(env_key, f"environment variable {self.variable} is set but empty")
            return os.environ[self.variable]
        if self.command:
            return self._run(command_key)
        if self.variable:
            raise self.error(env_key, f"environment variable {self.variable} is not set "
                                      f"and no {command_key} is given")
        raise self.error(f"{env_key} / {command_key}", "missing: say where the secret comes from")

    def _run(self, key: str) -> str:
        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise self.error(key, f"cannot parse the command: {exc}") from None
        if not argv:
            raise self.error(key, "the command is empty")
        try:
            result = subprocess.run(argv, cwd=self.folder, capture_output=True, text=True,
                                    timeout=SECRET_COMMAND_TIMEOUT_S, check=False)
        except FileNotFoundError:
            raise self.error(key, f"command not found: {argv[0]}") from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.error(key, f"command failed: {type(exc).__name__}") from None
        secret = result.stdout.strip()
        if result.returncode != 0 or not secret:
            detail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise self.error(key, f"command exited {result.returncode}: {detail[0]}")
        return secret

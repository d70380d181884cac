"""The project's exception tree and exit statuses.

Every failure is either *transient* (worth retrying: network trouble, a 4xx
reply, a server that is restarting) or *permanent* (retrying cannot help: a
5xx reply, bad input, a wrong password, a missing setting). Retry loops catch
``TransientError`` only; everything else is reported once and left alone.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """Process exit codes shared by client.py, server.py and classifier.py."""

    OK = 0
    ERROR = 1  # a request failed (bad image, could not identify a file ...)
    USAGE = 2  # bad command line or configuration
    TIMEOUT = 3  # no answer arrived in time
    AUTH = 4  # the mail server refused our credentials
    UNREACHABLE = 5  # the mail server could not be reached
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class AnimalIdError(Exception):
    """Base of every error this project raises on purpose."""

    exit_status = ExitStatus.ERROR


class TransientError(AnimalIdError):
    """A failure that may go away by itself: retry with backoff."""


class PermanentError(AnimalIdError):
    """A failure that retrying cannot fix."""


class ConfigError(PermanentError):
    """A missing or invalid setting; the message names file, section and key."""

    exit_status = ExitStatus.USAGE


class BadImageError(PermanentError):
    """Input that is not a usable image (not an image, truncated, a bomb ...)."""


class AuthError(PermanentError):
    """The mail server refused our credentials."""

    exit_status = ExitStatus.AUTH


class UnreachableError(TransientError):
    """The mail server did not answer (refused, DNS failure, timeout)."""

    exit_status = ExitStatus.UNREACHABLE


class ModelError(PermanentError):
    """The model description, weights or class list cannot be used."""

    exit_status = ExitStatus.USAGE
